package controller

import (
	"fmt"
	"time"
)

// DeadLetterInfo describes a dead-lettered key, with the key printed by
// fmt.Sprint, for debug pages and tools that do not know K.
type DeadLetterInfo struct {
	Key          string    `json:"key"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"lastError,omitempty"`
	FirstFailure time.Time `json:"firstFailure"`
	LastFailure  time.Time `json:"lastFailure"`
}

// DeadLetterInfos lists the queue's dead letters with printable keys.
func (c *Controller[K]) DeadLetterInfos() []DeadLetterInfo {
	dls := c.q.DeadLetters()
	out := make([]DeadLetterInfo, 0, len(dls))
	for _, d := range dls {
		info := DeadLetterInfo{Key: fmt.Sprint(d.Key), Attempts: d.Attempts, FirstFailure: d.FirstFailure, LastFailure: d.LastFailure}
		if d.LastError != nil {
			info.LastError = d.LastError.Error()
		}
		out = append(out, info)
	}
	return out
}

// ReplayKey replays the dead letter whose printed key is key (see
// DeadLetterInfo) with a fresh retry budget. It reports whether one was found.
func (c *Controller[K]) ReplayKey(key string) bool {
	for _, d := range c.q.DeadLetters() {
		if fmt.Sprint(d.Key) == key {
			return c.q.Replay(d.Key)
		}
	}
	return false
}

// ReplayAll replays every dead letter and returns how many.
func (c *Controller[K]) ReplayAll() int { return c.q.ReplayAll() }

// QueueDepth is the number of keys ready for a worker.
func (c *Controller[K]) QueueDepth() int { return c.q.Len() }

// QueueDepthByPriority is the number of keys ready for a worker at each
// priority.
func (c *Controller[K]) QueueDepthByPriority() map[int]int { return c.q.LenByPriority() }
