package webhook

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// checkDiff fails t unless diffJSON's patch turns src into a document equal
// to tgt (compared decoded, as the API server would see it).
func checkDiff(t *testing.T, src, tgt string) []byte {
	t.Helper()
	ops, err := diffJSON([]byte(src), []byte(tgt))
	if err != nil {
		t.Fatalf("diffJSON(%s, %s): %v", src, tgt, err)
	}
	patch := []byte("[]")
	if len(ops) > 0 {
		if patch, err = json.Marshal(ops); err != nil {
			t.Fatal(err)
		}
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch %s: %v", patch, err)
	}
	got, err := p.Apply([]byte(src))
	if err != nil {
		t.Fatalf("apply patch %s to %s: %v", patch, src, err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(tgt), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("patch %s turns %s into %s, want %s", patch, src, got, tgt)
	}
	return patch
}

func TestDiffJSON(t *testing.T) {
	for _, c := range []struct {
		name, src, tgt, patch string
	}{
		{"equal", `{"a":{"b":[1,2]}}`, `{"a":{"b":[1,2]}}`, `[]`},
		{"add a label", `{"metadata":{"name":"p","labels":{"a":"1"}},"spec":{"x":1}}`, `{"metadata":{"name":"p","labels":{"a":"1","b":"2"}},"spec":{"x":1}}`,
			`[{"value":"2","op":"add","path":"/metadata/labels/b"}]`},
		{"remove and replace", `{"a":1,"b":"x","c":true}`, `{"b":"y","c":true}`,
			`[{"op":"remove","path":"/a"},{"value":"y","op":"replace","path":"/b"}]`},
		{"add a map", `{"spec":{"containers":[{"name":"a"},{"name":"b"}]}}`, `{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"1"}}},{"name":"b"}]}}`,
			`[{"value":{"requests":{"cpu":"1"}},"op":"add","path":"/spec/containers/0/resources"}]`},
		{"equal by value", `{"n":1.0,"s":"\u00e9","e":1e2}`, `{"n":1,"s":"é","e":100}`, `[]`},
		{"whitespace", " {\n\"a\" : [ 1 , {\"b\" : null} ] }\n", `{"a":[1,{"b":null,"c":2}]}`, `[{"value":2,"op":"add","path":"/a/1/c"}]`},
		{"array grows", `{"a":[1,2]}`, `{"a":[1,2,3]}`, `[{"value":3,"op":"add","path":"/a/-"}]`},
		{"array shrinks", `{"a":{"b":[1,2,3]}}`, `{"a":{"b":[1]}}`, ``},
		{"pointer escapes", `{"a/b":1,"c~d":{"x":1}}`, `{"a/b":2,"c~d":{"x":2}}`, `[{"value":2,"op":"replace","path":"/a~1b"},{"value":2,"op":"replace","path":"/c~0d/x"}]`},
		{"type change", `{"a":{"b":1},"c":[1],"d":null}`, `{"a":[1],"c":"x","d":{}}`, ``},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{"x":1},"b":[{}]}`, ``},
		{"escaped key falls back", `{"a\u0062":1,"c":1}`, `{"ab":1,"c":2}`, `[{"value":2,"op":"replace","path":"/c"}]`},
		{"duplicate key falls back", `{"a":1,"a":2}`, `{"a":3}`, ``},
		{"escaped quotes", `{"a":"x\"y\\","b":{"c":"\\\"}"}}`, `{"a":"x\"y\\","b":{"c":"\\\"}","d":1}}`, `[{"value":1,"op":"add","path":"/b/d"}]`},
		{"large object", bigObject(40, ""), bigObject(40, "k7"), ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			patch := checkDiff(t, c.src, c.tgt)
			if c.patch != "" && string(patch) != c.patch {
				t.Errorf("patch = %s, want %s", patch, c.patch)
			}
		})
	}
}

// bigObject has n keys (k0…), all 1 except skip, which is left out.
func bigObject(n int, skip string) string {
	m := map[string]int{}
	for i := range n {
		m["k"+string(rune('0'+i%10))+string(rune('a'+i/10))] = 1
	}
	delete(m, skip+"a")
	b, _ := json.Marshal(m)
	return string(b)
}

func FuzzDiffJSON(f *testing.F) {
	f.Add(`{"a":{"b":[1,2]},"c":"x"}`, `{"a":{"b":[1,3]},"d":"x"}`)
	f.Add(`{"a":[{"n":"x","v":1},{"n":"y"}]}`, `{"a":[{"n":"x","v":2}]}`)
	f.Add(`{"a\u0062":1,"s":"\ud83d\ude00"}`, `{"ab":2,"s":"😀"}`)
	f.Add(`{"a":1,"a":2}`, `{"a":[]}`)
	f.Add(`{"a":1.50,"b":-0,"c":1E+2}`, `{"a":1.5,"b":0,"c":100.0}`)
	f.Add(`{"~/":{"":1}}`, `{"~/":{"":2,"/":3}}`)
	f.Fuzz(func(t *testing.T, src, tgt string) {
		var s, g map[string]any
		if json.Unmarshal([]byte(src), &s) != nil || json.Unmarshal([]byte(tgt), &g) != nil || s == nil || g == nil {
			return // the API server's object and the marshalled one are valid JSON objects
		}
		checkDiff(t, src, tgt)
	})
}
