package cache

import (
	"encoding"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A jsonPlan says how jsonstruct.go decodes a JSON value into a Go value of
// one type. Plans are built once per type (jsonPlanFor) and shared; they are
// never changed after they are published.
//
// The plans follow encoding/json v1 as sigs.k8s.io/json (kjson) forks it
// (case-sensitive names, integers into interface{} as int64): wherever this
// package cannot be sure to decode a value exactly as kjson would in its
// place, the plan says jsonDelegate and the value is handed to kjson alone.
// That is exact because every value the fast path decodes into starts zero,
// as kjson's does in a fresh T, and because kjson decodes a value alone the
// way it decodes it in place for every type that does not get
// jsonUnsupported.
type jsonPlan struct {
	kind jsonKind
	typ  reflect.Type
	bits int       // jsonInt, jsonUint, jsonFloat: the type's size in bits
	elem *jsonPlan // jsonPointer, jsonSlice, jsonMap: the element's plan
	// keyConv: a jsonMap's key type is a named string type, converted to.
	keyConv bool
	// fields: a jsonStruct's fields by their JSON name, embedded structs'
	// fields flattened in.
	fields map[string]*jsonField
}

type jsonKind uint8

const (
	// jsonDelegate: kjson decodes the value alone into the zero Go value.
	jsonDelegate jsonKind = iota
	// jsonUnsupported: the type is unnamed and its pointer has an
	// UnmarshalJSON or UnmarshalText method (promoted from an embedded
	// field). encoding/json ignores such methods for a value in place but
	// calls them for the value alone, so no value of it can be delegated;
	// whatever contains one is delegated instead.
	jsonUnsupported
	jsonString
	jsonBool
	jsonInt
	jsonUint
	jsonFloat
	jsonPointer
	jsonStruct
	jsonSlice
	jsonMap
	jsonStringMap // exactly map[string]string (labels, annotations)
	// jsonUnmarshaler: the type is named and its pointer implements
	// json.Unmarshaler (metav1.Time, resource.Quantity, ...).
	jsonUnmarshaler
	// jsonSkip: the value is validated and dropped (metadata.managedFields
	// in a wire plan).
	jsonSkip
	// jsonAnnotations: a jsonStringMap that drops the last-applied
	// annotation's string value, and is left nil if nothing else is in it
	// (metadata.annotations in a wire plan).
	jsonAnnotations
)

// jsonField is a struct field (or a field of an embedded struct) by JSON
// name: where it is from the start of the outer struct, and its index among
// the struct's fields (for the duplicate-member check).
type jsonField struct {
	name   string
	offset uintptr
	index  int
	plan   *jsonPlan
}

var (
	jsonPlans           sync.Map // reflect.Type → *jsonPlan
	wirePlans           sync.Map // reflect.Type → *jsonPlan, nil for none
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	stringType          = reflect.TypeFor[string]()
)

// jsonPlanFor returns t's plan, building it (and those of the types it
// contains) on first use. Safe for concurrent use.
func jsonPlanFor(t reflect.Type) *jsonPlan {
	if p, ok := jsonPlans.Load(t); ok {
		return p.(*jsonPlan)
	}
	b := planBuilder{building: map[reflect.Type]*jsonPlan{}}
	p := b.plan(t)
	// Publish only complete plans: a type that refers to itself sees its own
	// plan while it is being built, but nobody else does until now.
	for typ, bp := range b.building {
		jsonPlans.LoadOrStore(typ, bp)
	}
	return p
}

type planBuilder struct {
	building map[reflect.Type]*jsonPlan
}

func (b *planBuilder) plan(t reflect.Type) *jsonPlan {
	if p, ok := jsonPlans.Load(t); ok {
		return p.(*jsonPlan)
	}
	if p, ok := b.building[t]; ok {
		return p
	}
	p := &jsonPlan{typ: t}
	b.building[t] = p
	b.fill(p)
	return p
}

func (b *planBuilder) fill(p *jsonPlan) {
	t := p.typ
	if t.Kind() == reflect.Pointer {
		if t.Name() != "" { // a named pointer type: rare, let kjson have it
			p.kind = jsonDelegate
			return
		}
		p.elem = b.plan(t.Elem())
		p.kind = jsonPointer
		if p.elem.kind == jsonUnsupported {
			p.kind = jsonDelegate
		}
		return
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		switch {
		case t.Name() == "":
			p.kind = jsonUnsupported
		case pt.Implements(jsonUnmarshalerType):
			p.kind = jsonUnmarshaler
		default: // UnmarshalText only: kjson calls it for strings, and errs for the rest
			p.kind = jsonDelegate
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		p.kind = jsonString
		if t == reflect.TypeFor[json.Number]() { // kjson's Number is an alias of it
			p.kind = jsonDelegate // takes number literals too, and checks strings
		}
	case reflect.Bool:
		p.kind = jsonBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind, p.bits = jsonInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p.kind, p.bits = jsonUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		p.kind, p.bits = jsonFloat, t.Bits()
	case reflect.Struct:
		b.fillStruct(p)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 { // []byte and kin: base64 strings
			p.kind = jsonDelegate
			return
		}
		p.elem = b.plan(t.Elem())
		p.kind = jsonSlice
		if p.elem.kind == jsonUnsupported {
			p.kind = jsonDelegate
		}
	case reflect.Map:
		kt := t.Key()
		if kt.Kind() != reflect.String || reflect.PointerTo(kt).Implements(textUnmarshalerType) {
			p.kind = jsonDelegate // integer and text-unmarshaled keys
			return
		}
		p.elem = b.plan(t.Elem())
		p.kind, p.keyConv = jsonMap, kt != stringType
		switch {
		case p.elem.kind == jsonUnsupported:
			p.kind = jsonDelegate
		case kt == stringType && t.Elem() == stringType:
			p.kind = jsonStringMap
		}
	default: // interface{} (kjson's PreserveInts rules), arrays, and kinds JSON cannot fill
		p.kind = jsonDelegate
	}
}

// fillStruct names t's fields as encoding/json v1 does. Where v1's rules
// get subtle (name conflicts between embedded structs, embedded pointers,
// unexported embedded structs, ",string", tag names v1 would reject) the
// struct is delegated whole.
func (b *planBuilder) fillStruct(p *jsonPlan) {
	p.kind = jsonStruct
	var fields []*jsonField
	if !b.structFields(p.typ, 0, &fields) {
		p.kind = jsonDelegate
		return
	}
	p.fields = make(map[string]*jsonField, len(fields))
	for i, f := range fields {
		if _, dup := p.fields[f.name]; dup || f.plan.kind == jsonUnsupported {
			p.kind, p.fields = jsonDelegate, nil
			return
		}
		f.index = i
		p.fields[f.name] = f
	}
}

// structFields appends t's fields, found at offset base in the outer
// struct, to out. It reports false for a struct the plan does not handle.
func (b *planBuilder) structFields(t reflect.Type, base uintptr, out *[]*jsonField) bool {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous {
			k := sf.Type.Kind()
			switch {
			case !sf.IsExported() && k != reflect.Struct && k != reflect.Pointer:
				continue // v1 ignores these
			case !sf.IsExported() || k != reflect.Struct:
				return false // pointers, unexported structs, named non-structs
			case name == "":
				if !b.structFields(sf.Type, base+sf.Offset, out) {
					return false
				}
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		if name != "" && !validJSONName(name) {
			return false
		}
		for o := range strings.SplitSeq(opts, ",") {
			if o == "string" {
				return false
			}
		}
		if name == "" {
			name = sf.Name
		}
		*out = append(*out, &jsonField{name: name, offset: base + sf.Offset, plan: b.plan(sf.Type)})
	}
	return true
}

// validJSONName reports whether encoding/json v1 takes name, from a json
// tag, as a member name: letters, digits, and punctuation other than
// backslash and quotes.
func validJSONName(name string) bool {
	for _, c := range name {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			continue
		}
		if !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) {
			return false
		}
	}
	return true
}

// wirePlanFor returns the plan the custom-resource decoder uses for t, a
// struct type: t's plan, with its top-level metadata (when it is a
// metav1.ObjectMeta) dropping managedFields and the last-applied
// annotation as it decodes, the way stripJSONObject cuts them from the
// bytes. It returns nil for a t without a struct plan, or whose "metadata"
// field is of another type (stripJSONObject then runs first and kjson
// decodes).
func wirePlanFor(t reflect.Type) *jsonPlan {
	if p, ok := wirePlans.Load(t); ok {
		return p.(*jsonPlan)
	}
	p := jsonPlanFor(t)
	var wp *jsonPlan
	if p.kind == jsonStruct {
		if mf := p.fields["metadata"]; mf == nil {
			wp = p
		} else if mf.plan.typ == reflect.TypeFor[metav1.ObjectMeta]() && mf.plan.kind == jsonStruct {
			meta := withFieldPlans(mf.plan, map[string]*jsonPlan{
				"managedFields": {kind: jsonSkip},
				"annotations":   {kind: jsonAnnotations, typ: reflect.TypeFor[map[string]string]()},
			})
			wp = withFieldPlans(p, map[string]*jsonPlan{"metadata": meta})
		}
	}
	wirePlans.LoadOrStore(t, wp)
	return wp
}

// withFieldPlans returns a copy of the struct plan p with the named
// fields' plans replaced.
func withFieldPlans(p *jsonPlan, plans map[string]*jsonPlan) *jsonPlan {
	c := *p
	c.fields = maps.Clone(p.fields)
	for name, fp := range plans {
		if f := c.fields[name]; f != nil {
			nf := *f
			nf.plan = fp
			c.fields[name] = &nf
		}
	}
	return &c
}
