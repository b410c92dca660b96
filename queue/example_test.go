package queue_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/skiffkit/skiff/queue"
)

func Example() {
	q := queue.New(queue.Options[string]{MaxFailures: 2})
	q.AddWithPriority("default/web", 10)
	q.Add("default/db")
	q.Add("default/web") // deduplicated

	ctx := context.Background()
	for q.Len() > 0 {
		key, err := q.Get(ctx)
		if err != nil {
			break
		}
		fmt.Println("reconcile", key)
		if key == "default/db" {
			q.Fail(key, errors.New("connection refused")) // retried after a backoff
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
	q.Fail("default/db", errors.New("connection refused")) // second failure: budget used up
	for _, d := range q.DeadLetters() {
		fmt.Println("dead:", d.Key, d.Attempts, d.LastError)
	}
	q.ShutDown()
	// Output:
	// reconcile default/web
	// reconcile default/db
	// dead: default/db 2 connection refused
}
