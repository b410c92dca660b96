package cache

// leanSource returns src and o as an informer uses them: src marked for
// lean decoding (see leanLW) when o keeps the default transform and does
// not ask for FullDecode, and, unless o.NoIntern or o.Compact, o's
// transform (default DefaultTransform) followed by interning the object's
// strings and maps.
func leanSource[T Object](src Source[T], o Options[T]) (Source[T], Options[T]) {
	if o.Transform == nil && !o.FullDecode && src.LW != nil {
		src.LW = leanLW{src.LW}
	}
	if !o.NoIntern && !o.Compact { // a compact store interns what it keeps decoded
		in, transform := newInterner(), o.Transform
		if transform == nil {
			transform = DefaultTransform[T]
		}
		o.Transform = func(t T) T {
			t = transform(t)
			in.object(t)
			return t
		}
	}
	return src, o
}
