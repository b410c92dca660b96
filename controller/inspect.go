package controller

import (
	"context"
	"fmt"
	"time"
)

// DeadLetterInfo describes a dead-lettered key, with the key printed by
// fmt.Sprint (by the DeadLetterCodec with a DeadLetterStore), for debug
// pages and tools that do not know K.
type DeadLetterInfo struct {
	Key          string    `json:"key"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"lastError,omitempty"`
	FirstFailure time.Time `json:"firstFailure"`
	LastFailure  time.Time `json:"lastFailure"`
	// Here says the key is dead in this replica's queue. Without a
	// DeadLetterStore every dead letter is here.
	Here bool `json:"here"`
	// Persisted says the DeadLetterStore holds the key; Replica is the
	// replica that wrote its entry ("" if not persisted).
	Persisted bool   `json:"persisted,omitempty"`
	Replica   string `json:"replica,omitempty"`
}

// replayTimeout bounds a replay's store write.
const replayTimeout = 30 * time.Second

// DeadLetterInfos lists the dead letters: the queue's and, with a
// DeadLetterStore, those persisted by any replica.
func (c *Controller[K]) DeadLetterInfos() []DeadLetterInfo {
	if c.dl != nil {
		ls := c.dl.List()
		out := make([]DeadLetterInfo, 0, len(ls))
		for _, l := range ls {
			info := DeadLetterInfo{Key: l.Key, Attempts: l.Attempts, LastError: l.LastError, FirstFailure: l.FirstFailure,
				LastFailure: l.LastFailure, Here: l.Here, Persisted: l.Persisted}
			if l.Persisted {
				info.Replica = l.Replica
			}
			out = append(out, info)
		}
		return out
	}
	dls := c.q.DeadLetters()
	out := make([]DeadLetterInfo, 0, len(dls))
	for _, d := range dls {
		info := DeadLetterInfo{Key: fmt.Sprint(d.Key), Attempts: d.Attempts, FirstFailure: d.FirstFailure, LastFailure: d.LastFailure, Here: true}
		if d.LastError != nil {
			info.LastError = d.LastError.Error()
		}
		out = append(out, info)
	}
	return out
}

// ReplayKey replays the dead letter whose printed key is key (see
// DeadLetterInfo) with a fresh retry budget. With a DeadLetterStore it
// works from any replica: the persisted entry is deleted, and the replica
// that holds the key replays it. It reports whether one was found; a
// failed store write is logged and reported as false.
func (c *Controller[K]) ReplayKey(key string) bool {
	if c.dl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
		defer cancel()
		ok, err := c.dl.Replay(ctx, key)
		if err != nil {
			c.log.Error("replay a dead letter", "key", key, "err", err)
		}
		return ok
	}
	for _, d := range c.q.DeadLetters() {
		if fmt.Sprint(d.Key) == key {
			return c.q.Replay(d.Key)
		}
	}
	return false
}

// ReplayAll replays every dead letter (with a DeadLetterStore, every
// replica's) and returns how many.
func (c *Controller[K]) ReplayAll() int {
	if c.dl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
		defer cancel()
		n, err := c.dl.ReplayAll(ctx)
		if err != nil {
			c.log.Error("replay all dead letters", "err", err)
		}
		return n
	}
	return c.q.ReplayAll()
}

// QueueDepth is the number of keys ready for a worker.
func (c *Controller[K]) QueueDepth() int { return c.q.Len() }

// QueueDepthByPriority is the number of keys ready for a worker at each
// priority.
func (c *Controller[K]) QueueDepthByPriority() map[int]int { return c.q.LenByPriority() }
