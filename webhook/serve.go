package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// bodies are request buffers, reused once the handler that saw them has
// returned.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// outcome is what a handler's goroutine hands back.
type outcome struct {
	resp  Response
	patch []byte
	err   error
	panic any
	stack string // where it panicked
}

// admission serves the webhook h: read and check the body, decode it into
// h's type, run the handler under its deadline, answer.
func (s *Server) admission(h *hook) http.Handler {
	path := h.o.Path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := bodies.Get().(*bytes.Buffer)
		buf.Reset()
		reuse := true
		defer func() {
			if reuse && buf.Cap() <= 1<<20 {
				bodies.Put(buf)
			}
		}()
		if err := s.readBody(r, buf); err != nil {
			s.refuse(w, path, err)
			return
		}
		wr, err := decodeReview(buf.Bytes())
		if err != nil {
			s.refuse(w, path, err)
			return
		}
		run, err := h.prepare(wr)
		if err != nil {
			s.refuse(w, path, err)
			return
		}
		out, timedOut := s.call(r.Context(), h, run)
		if timedOut {
			reuse = false // the handler may still read the request's raw object
			if r.Context().Err() != nil {
				return // the API server hung up: nobody to answer
			}
			s.m.timeouts.WithLabelValues(path).Inc()
			s.log.Warn("webhook handler overran its deadline; answered the timeout response", "webhook", path, "uid", wr.UID, "deadline", h.o.HandlerTimeout)
			s.answer(w, path, http.StatusOK, wr.UID, *h.o.OnTimeout, nil)
			return
		}
		switch {
		case out.panic != nil:
			s.panicked(path, out.panic, out.stack)
			s.answer(w, path, http.StatusInternalServerError, wr.UID, DenyWithCode(http.StatusInternalServerError, fmt.Sprintf("webhook %s: the handler panicked", h.o.Name)), nil)
		case out.err != nil:
			s.log.Error("webhook failed", "webhook", path, "uid", wr.UID, "err", out.err)
			s.answer(w, path, http.StatusInternalServerError, wr.UID, DenyWithCode(http.StatusInternalServerError, fmt.Sprintf("webhook %s: %v", h.o.Name, out.err)), nil)
		default:
			if !out.resp.Allowed {
				c := out.resp.Code
				if c == 0 {
					c = http.StatusForbidden
				}
				s.m.rejections.WithLabelValues(path, code(int(c))).Inc()
			}
			s.answer(w, path, http.StatusOK, wr.UID, out.resp, out.patch)
		}
	})
}

// call runs the handler in a goroutine of its own, so that an overrunning
// handler can be answered for; the server's WaitGroup keeps Run from
// returning before it does. timedOut is true when the deadline (or the
// request) ended first.
func (s *Server) call(ctx context.Context, h *hook, run func(context.Context) (Response, []byte, error)) (out outcome, timedOut bool) {
	ctx, cancel := context.WithTimeout(ctx, h.o.HandlerTimeout)
	defer cancel()
	done := make(chan outcome, 1)
	s.handlers.Add(1) // within instrument's own count, so never after Run's Wait began
	go func() {
		defer s.handlers.Done()
		defer func() {
			if p := recover(); p != nil {
				done <- outcome{panic: p, stack: stack()}
			}
		}()
		var o outcome
		o.resp, o.patch, o.err = run(ctx)
		done <- o
	}()
	select {
	case out = <-done:
		return out, false
	case <-ctx.Done():
		select {
		case out = <-done: // finished at the deadline: take its answer
			return out, false
		default:
			return outcome{}, true
		}
	}
}

// readBody reads r's body into buf, refusing what is not JSON or is larger
// than MaxBodyBytes.
func (s *Server) readBody(r *http.Request, buf *bytes.Buffer) error {
	if r.Method != http.MethodPost {
		return badRequest("method", "", "method %s is not allowed; the API server POSTs AdmissionReviews", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return badRequest("content_type", "", "content type %q is not application/json", ct)
		}
	}
	limit := s.o.MaxBodyBytes
	if r.ContentLength > limit {
		return badRequest("body_too_large", "", "the body is %d bytes, more than the limit of %d", r.ContentLength, limit)
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return badRequest("read", "", "read the body: %v", err)
	}
	if n > limit {
		return badRequest("body_too_large", "", "the body is more than the limit of %d bytes", limit)
	}
	return nil
}

// refuse answers a bad request with HTTP 400 and an AdmissionReview that
// says why, and counts it.
func (s *Server) refuse(w http.ResponseWriter, path string, err error) {
	var bad *BadRequestError
	if !errors.As(err, &bad) {
		bad = &BadRequestError{Reason: "other", Message: err.Error()}
	}
	s.m.badRequests.WithLabelValues(path, bad.Reason).Inc()
	s.log.Debug("bad webhook request", "webhook", path, "reason", bad.Reason, "err", bad.Message)
	s.answer(w, path, http.StatusBadRequest, bad.UID, DenyWithCode(http.StatusBadRequest, bad.Message), nil)
}

// answer writes an AdmissionReview response with the HTTP status status.
func (s *Server) answer(w http.ResponseWriter, path string, status int, uid types.UID, r Response, patch []byte) {
	body, err := encodeResponse(uid, r, patch)
	if err != nil {
		s.log.Error("encode the webhook response", "webhook", path, "err", err)
		http.Error(w, "encode the response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func stack() string { return string(debug.Stack()) }
