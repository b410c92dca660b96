package cache

import "slices"

// stripKeys are cut from an object's bytes before decoding (see stripJSONObject).
var (
	keyMetadata      = []byte("metadata")
	keyManagedFields = []byte("managedFields")
	keyAnnotations   = []byte("annotations")
	keyLastApplied   = []byte(LastAppliedAnnotation)
)

// cut is a byte range [from, to) to remove.
type cut struct{ from, to int }

// stripJSONObject removes metadata.managedFields and the last-applied
// annotation from obj, the bytes of one JSON object, in place, and returns
// the shortened slice. An annotations object left empty is removed whole,
// so the decoded object has nil annotations, as DefaultTransform leaves it.
// It returns an error for bytes that are not one JSON object (with nothing
// but white space after it); what it leaves is still to be validated by the
// decoder.
func stripJSONObject(obj []byte) ([]byte, error) {
	start := skipSpace(obj, 0)
	var cuts []cut
	end := start
	for m, err := range objectMembers(obj, start, 1) {
		if err != nil {
			return nil, err
		}
		end = m.objEnd
		if m.start >= 0 && string(m.key) == string(keyMetadata) && obj[m.vStart] == '{' {
			if cuts, err = stripMetadata(obj, m.vStart, cuts); err != nil {
				return nil, err
			}
		}
	}
	if rest := skipSpace(obj, end); rest != len(obj) {
		return nil, jsonSyntax(obj, rest, "the end of the object")
	}
	if len(cuts) == 0 {
		return obj, nil
	}
	slices.SortFunc(cuts, func(a, b cut) int { return a.from - b.from })
	w := cuts[0].from
	for k, c := range cuts {
		next := len(obj)
		if k+1 < len(cuts) {
			next = cuts[k+1].from
		}
		w += copy(obj[w:], obj[c.to:next])
	}
	return obj[:w], nil
}

// stripMetadata appends the cuts for the metadata object at obj[i].
func stripMetadata(obj []byte, i int, cuts []cut) ([]cut, error) {
	var ms [24]member
	all := ms[:0]
	for m, err := range objectMembers(obj, i, 2) {
		if err != nil {
			return cuts, err
		}
		if m.start >= 0 {
			all = append(all, m)
		}
	}
	drop := make([]bool, len(all))
	dropAny := false
	for k, m := range all {
		switch string(m.key) {
		case string(keyManagedFields):
			drop[k], dropAny = true, true
		case string(keyAnnotations):
			if obj[m.vStart] != '{' {
				continue
			}
			inner, emptied, err := stripLastApplied(obj, m.vStart)
			if err != nil {
				return cuts, err
			}
			if emptied {
				drop[k], dropAny = true, true
			} else {
				cuts = append(cuts, inner...)
			}
		}
	}
	if !dropAny {
		return cuts, nil
	}
	return appendMemberCuts(cuts, all, drop), nil
}

// stripLastApplied returns the cuts that remove the last-applied member(s)
// of the annotations object at obj[i], or emptied if nothing else is left.
func stripLastApplied(obj []byte, i int) (cuts []cut, emptied bool, err error) {
	var all []member
	var drop []bool
	found := false
	for m, err := range objectMembers(obj, i, 3) {
		if err != nil {
			return nil, false, err
		}
		if m.start < 0 {
			continue
		}
		// A value that is not a string is left for the decoder to judge.
		d := string(m.key) == string(keyLastApplied) && obj[m.vStart] == '"'
		found = found || d
		all, drop = append(all, m), append(drop, d)
	}
	if !found {
		return nil, false, nil
	}
	if !slices.Contains(drop, false) {
		return nil, true, nil
	}
	return appendMemberCuts(nil, all, drop), false, nil
}

// appendMemberCuts removes the members marked in drop from their object,
// keeping the commas right: a dropped member before the last kept one goes
// with its trailing comma; dropped members after it go with the comma that
// precedes them.
func appendMemberCuts(cuts []cut, all []member, drop []bool) []cut {
	lastKept := -1
	for k := range all {
		if !drop[k] {
			lastKept = k
		}
	}
	for k, m := range all {
		if drop[k] && k < lastKept {
			cuts = append(cuts, cut{m.start, m.next})
		}
	}
	if lastKept < len(all)-1 {
		from := all[lastKept+1].start
		if lastKept >= 0 {
			from = all[lastKept].vEnd
		}
		cuts = append(cuts, cut{from, all[len(all)-1].vEnd})
	}
	return cuts
}
