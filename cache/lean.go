package cache

import "k8s.io/apimachinery/pkg/runtime"

// leanSource returns src as an informer with options o reads it: marked for
// lean decoding (see leanLW) when o keeps the default transform and does
// not ask for FullDecode, and interning its objects' strings unless
// o.NoIntern.
func leanSource[T Object](src Source[T], o Options[T]) Source[T] {
	if o.Transform == nil && !o.FullDecode && src.LW != nil {
		src.LW = leanLW{src.LW}
	}
	if !o.NoIntern && src.Decode != nil {
		in, decode := newInterner(), src.Decode
		src.Decode = func(obj runtime.Object) (T, error) {
			t, err := decode(obj)
			if err == nil {
				in.object(t)
			}
			return t, err
		}
	}
	return src
}
