package mapping

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Document is a canonical JSON document: what MapX12 and MapCSV produce,
// Marshal renders and ValidateDocument checks. The zero Document is no
// document (Marshal writes it as {}, as it wrote a nil map).
//
// A mapped document keeps its values typed, and its objects as runs of
// slots in one array laid out by the shapes its mapping compiled: mapping a
// document then boxes no value and builds no map, and Marshal writes each
// object's keys in the order sorted once at load. Read it with Get, or
// whole with Map where speed does not matter.
type Document struct{ t *tree }

// DocumentFrom makes a document of decoded or hand-built JSON (maps,
// []any lists, strings, bools, numbers, nil), for Marshal and the gateway's
// own documents. m is kept, not copied; a nil m is the zero Document.
func DocumentFrom(m map[string]any) Document {
	if m == nil {
		return Document{}
	}
	return Document{t: &tree{generic: m}}
}

// Get returns the value of a top-level key as Map would show it (a string,
// int64, float64, json.Number, bool, map[string]any, []any or what an
// expression returned), or nil when the document has no such key.
func (d Document) Get(key string) any {
	switch {
	case d.t == nil:
		return nil
	case d.t.root == nil:
		return d.t.generic[key]
	}
	for i, f := range d.t.root.fields {
		if f.name == key {
			return d.t.toAny(f.object, &d.t.vals[i])
		}
	}
	return nil
}

// Map returns the whole document as maps, []any lists and the scalars Get
// returns: the form expressions (out, doc) and the JSON Schema validator
// read. A mapped document is converted anew on each call; a DocumentFrom
// document returns its own map.
func (d Document) Map() map[string]any {
	switch {
	case d.t == nil:
		return nil
	case d.t.root == nil:
		return d.t.generic
	}
	return d.t.object(d.t.root, 0)
}

// MarshalJSON renders the document as Marshal does, so that encoding/json
// (json.MarshalIndent of test output) writes the same document; the zero
// Document is null, as a nil map was.
func (d Document) MarshalJSON() ([]byte, error) {
	if d.t == nil {
		return []byte("null"), nil
	}
	return Marshal(d)
}

// shape is an output object as its mapping compiled it: slot i of an
// object holds the value of fields[i], and Marshal writes the slots in
// sorted order, that of encoding/json's sorted map keys.
type shape struct {
	fields []*field
	sorted []int
}

// newShape lays out an object of fields (nil for none, which the mapping
// reads as a field without an object) and escapes each key once.
func newShape(fields []*field) *shape {
	if fields == nil {
		return nil
	}
	sh := &shape{fields: fields, sorted: make([]int, len(fields))}
	for i, f := range fields {
		sh.sorted[i] = i
		f.key = append(appendString(nil, f.name), ':')
	}
	slices.SortFunc(sh.sorted, func(a, b int) int { return strings.Compare(fields[a].name, fields[b].name) })
	return sh
}

// tree holds a document: a mapped one in vals (the root object's slots
// first) and text, or a generic map. vals and text hold no pointers, so the
// garbage collector neither scans them nor makes their stores pay a write
// barrier.
type tree struct {
	vals    []value
	text    []byte // the bytes of string values, appended to only
	anys    []any  // what expressions returned, for values of kind vAny
	root    *shape
	generic map[string]any
	hints   *sizeHints // the mapping's, nil for generic documents
}

// sizeHints remember how big a mapping's last document was, so that the
// next one's arrays and JSON buffer are allocated once at their size
// instead of grown by doubling. They are capped: a big file's sizes are not
// worth reserving for every small one after it, and growing costs little
// next to mapping a big document.
type sizeHints struct {
	vals, text, json atomic.Int32
}

const (
	maxValsHint = 8 << 10 // values, 16 bytes each
	maxTextHint = 64 << 10
	maxJSONHint = 256 << 10
)

type valueKind uint8

const (
	vAbsent    valueKind = iota // the key is left out
	vString                     // off, n: its bytes in text
	vInt                        // an int64
	vFloat                      // a float64
	vFloatText                  // off, n: a float64's text, as JSON writes it (jsonFloatText)
	vNumber                     // off, n: exact decimal text, a json.Number
	vBool                       // 0 or 1
	vObject                     // off: the object's first slot; its shape is its field's object
	vList                       // off, n: the items, each a vObject of the field's object shape
	vAny                        // off: index in anys
)

// value is one slot or list item of a mapped document: its kind, and 64
// bits that hold the number or where the value is (off and n, 32 bits each:
// a document has less than 4 GiB of text and 4G values).
type value struct {
	bits uint64
	kind valueKind
}

func placed(k valueKind, off, n int) value {
	return value{kind: k, bits: uint64(off)<<32 | uint64(uint32(n))}
}

func (v *value) off() uint32 { return uint32(v.bits >> 32) }
func (v *value) n() uint32   { return uint32(v.bits) }

func intValue(n int64) value     { return value{kind: vInt, bits: uint64(n)} }
func floatValue(f float64) value { return value{kind: vFloat, bits: math.Float64bits(f)} }

func boolValue(b bool) value {
	if b {
		return value{kind: vBool, bits: 1}
	}
	return value{kind: vBool}
}

// addText appends b to the document's text and returns it as a string.
// Selectors copy the element values they read here, so that a value kept
// as it was read is not copied again (textValue). The string shares the
// text's bytes, which are never written again once appended, so it stays
// valid as strings.Builder's strings do, also when text grows elsewhere.
func (t *tree) addText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	n := len(t.text)
	t.text = append(t.text, b...)
	return unsafe.String(&t.text[n], len(b))
}

// textValue makes s a value of kind k (vString, vNumber or vFloatText) in the
// document's text: where it already is (addText), or appended.
func (t *tree) textValue(k valueKind, s string) value {
	if off, ok := t.within(s); ok {
		return placed(k, off, len(s))
	}
	v := placed(k, len(t.text), len(s))
	t.text = append(t.text, s...)
	return v
}

// within returns where s lies in text, if it does. Only addresses are
// compared: s is not read through them.
func (t *tree) within(s string) (int, bool) {
	if len(s) == 0 {
		return 0, true
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(t.text)))
	if p < base || p+uintptr(len(s)) > base+uintptr(len(t.text)) {
		return 0, false
	}
	return int(p - base), true
}

// timeValue formats tm into the document's text as a string value.
func (t *tree) timeValue(tm time.Time, layout string) value {
	off := len(t.text)
	t.text = tm.AppendFormat(t.text, layout)
	return placed(vString, off, len(t.text)-off)
}

// str is a string or number value's text, sharing the document's bytes
// (see addText).
func (t *tree) str(v *value) string {
	if v.n() == 0 {
		return ""
	}
	return unsafe.String(&t.text[v.off()], v.n())
}

// bytes is a string or number value's text.
func (t *tree) bytes(v *value) []byte {
	return t.text[v.off() : v.off()+v.n()]
}

// empty reports whether a field's value counts as empty (required fails,
// omit_empty leaves it out): none, or the empty string.
func (v *value) empty() bool {
	return v.kind == vAbsent || v.kind == vString && v.n() == 0
}

// scalar is a converted value as expressions see it (value): a decimal is a
// float64 even when its exact text is kept.
func (t *tree) scalar(v *value) any {
	switch v.kind {
	case vString:
		return t.str(v)
	case vInt:
		return int64(v.bits)
	case vFloat:
		return math.Float64frombits(v.bits)
	case vFloatText:
		f, _ := strconv.ParseFloat(t.str(v), 64) // jsonFloatText: it parses
		return f
	case vNumber:
		f, _ := strconv.ParseFloat(t.str(v), 64) // what json.Number.Float64 gives
		return f
	case vBool:
		return v.bits == 1
	}
	return nil
}

// empty reports whether an object has no value in any slot.
func (t *tree) empty(sh *shape, off int) bool {
	for _, v := range t.vals[off : int(off)+len(sh.fields)] {
		if v.kind != vAbsent {
			return false
		}
	}
	return true
}

// object converts a mapped object to a map, as it was before the typed
// documents: what expressions and the schema validator read.
func (t *tree) object(sh *shape, off int) map[string]any {
	slots := t.vals[off : int(off)+len(sh.fields)]
	n := 0
	for i := range slots {
		if slots[i].kind != vAbsent {
			n++
		}
	}
	m := make(map[string]any, n)
	for i := range slots {
		if slots[i].kind != vAbsent {
			m[sh.fields[i].name] = t.toAny(sh.fields[i].object, &slots[i])
		}
	}
	return m
}

// toAny converts one value; sh is the shape of its field's object.
func (t *tree) toAny(sh *shape, v *value) any {
	switch v.kind {
	case vObject:
		return t.object(sh, int(v.off()))
	case vList:
		l := make([]any, v.n())
		for i, item := range t.vals[v.off() : v.off()+v.n()] {
			l[i] = t.object(sh, int(item.off()))
		}
		return l
	case vNumber:
		return json.Number(t.str(v))
	case vAny:
		return t.anys[v.off()]
	}
	return t.scalar(v)
}
