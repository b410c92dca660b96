package cache_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffkit/skiff/cache"
)

// Readers running against a writer (upserts, deletes, replaces) always see
// indexes that agree with the objects they return.
func TestStoreConcurrentReadersSeeConsistentIndexes(t *testing.T) {
	s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Indexes: map[string]cache.IndexFunc[*corev1.Pod]{"app": cache.LabelIndex[*corev1.Pod]("app")}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, app := range []string{"a0", "a1", "a2"} {
					for _, p := range s.ByIndex("app", app) {
						if p.Labels["app"] != app {
							t.Errorf("ByIndex(app=%s) returned %s with app=%s", app, p.Name, p.Labels["app"])
							return
						}
					}
				}
				for _, p := range s.List(nil) {
					if q, ok := s.Get(cache.KeyOf(p)); ok && q.Name != p.Name {
						t.Errorf("Get(%s) returned %s", cache.KeyOf(p), q.Name)
						return
					}
				}
			}
		})
	}
	rv := 0
	for i := range 2000 {
		rv++
		name := fmt.Sprint("p", i%50)
		switch i % 7 {
		case 0:
			w.Delete(key("ns/" + name))
		case 6:
			var list []*corev1.Pod
			for j := range 30 {
				list = append(list, pod("ns", fmt.Sprint("p", (i+j)%50), strconv.Itoa(rv), "app", fmt.Sprint("a", j%3)))
			}
			w.Replace(list, strconv.Itoa(rv))
		default:
			w.Upsert(pod("ns", name, strconv.Itoa(rv), "app", fmt.Sprint("a", i%3)))
		}
	}
	close(stop)
	wg.Wait()
}
