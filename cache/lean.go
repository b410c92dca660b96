package cache

// leanSource returns src and o as an informer uses them: src marked for
// lean decoding (see leanLW) when o keeps the default transform and does
// not ask for FullDecode, and, unless o.NoIntern or o.Compact, o's
// transform (default DefaultTransform) followed by interning the object's
// strings and maps.
//
// With lean decoding, a source whose Decode is its RESTSource's Assert
// (so the decoded objects are the stored ones), a type with a reusable
// spec, and no compact store, it also returns the specReuse the informer
// and its watches share (else nil): interning then skips a reused spec.
// With interning on, pod specs that are not reused are decoded by a
// podSpecSharer, which interns them itself.
func leanSource[T Object](src Source[T], o Options[T]) (Source[T], Options[T], *specReuse) {
	var reuse *specReuse
	if o.Transform == nil && !o.FullDecode && src.LW != nil {
		if !o.Compact && src.decodesByAssert() {
			reuse = newSpecReuse[T]()
		}
		src.LW = leanLW{ListerWatcher: src.LW, reuse: reuse}
	}
	if !o.NoIntern && !o.Compact { // a compact store interns what it keeps decoded
		in, transform := newInterner(), o.Transform
		if reuse != nil {
			reuse.share = newPodSpecSharer(in)
		}
		if transform == nil {
			transform = DefaultTransform[T]
		}
		o.Transform = func(t T) T {
			t = transform(t)
			in.object(t, reuse != nil && reuse.specInterned(t))
			return t
		}
	}
	return src, o, reuse
}
