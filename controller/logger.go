package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
)

type loggerKey struct{}

// WithLogger returns ctx carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger returns the logger ctx carries. Inside Reconcile it is the
// controller's logger with attributes controller, key and reconcileID (a
// random ID per call, to find every line of one reconcile); outside,
// slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

func newReconcileID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
