package queue

// heap is a binary min-heap of E kept in a slice, ordered by O. It tells O
// where each element is (moved) after every move, so an element can be fixed
// or removed in O(log n) without a search. The queue has two: the waiting
// keys by deadline (waitOrder) and the heads of the ready buckets
// (readyOrder).
type heap[E any, O heapOrder[E]] struct {
	s   []E
	ord O
}

// heapOrder orders a heap's elements and records their positions.
type heapOrder[E any] interface {
	less(a, b E) bool
	moved(x E, j int32) // x is now at s[j]; j is -1 once removed
}

func (h *heap[E, O]) len() int { return len(h.s) }

func (h *heap[E, O]) push(x E) {
	h.s = append(h.s, x)
	h.up(len(h.s) - 1)
}

// up moves the element at j towards the root until its parent is not greater.
func (h *heap[E, O]) up(j int) {
	s := h.s
	x := s[j]
	for j > 0 {
		p := (j - 1) / 2
		if !h.ord.less(x, s[p]) {
			break
		}
		s[j] = s[p]
		h.ord.moved(s[j], int32(j))
		j = p
	}
	s[j] = x
	h.ord.moved(x, int32(j))
}

// down moves the element at j towards the leaves until no child is smaller.
func (h *heap[E, O]) down(j int) {
	s := h.s
	n := len(s)
	x := s[j]
	for {
		c := 2*j + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h.ord.less(s[r], s[c]) {
			c = r
		}
		if !h.ord.less(s[c], x) {
			break
		}
		s[j] = s[c]
		h.ord.moved(s[j], int32(j))
		j = c
	}
	s[j] = x
	h.ord.moved(x, int32(j))
}

// fix restores the order after the element at j changed.
func (h *heap[E, O]) fix(j int) {
	if j > 0 && h.ord.less(h.s[j], h.s[(j-1)/2]) {
		h.up(j)
	} else {
		h.down(j)
	}
}

// remove takes out the element at j and returns it.
func (h *heap[E, O]) remove(j int) E {
	s := h.s
	x := s[j]
	last := len(s) - 1
	s[j] = s[last]
	var zero E
	s[last] = zero
	h.s = s[:last]
	if j != last {
		h.fix(j)
	}
	h.ord.moved(x, -1)
	return x
}
