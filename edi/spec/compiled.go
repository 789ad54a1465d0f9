package spec

import (
	"encoding/binary"
	"sync/atomic"
)

// Kind is an element's Type as a small integer, so that the validator's
// per-element switch compares a byte, not a string.
type Kind uint8

// The kinds of data element types; KindUnknown for an Element made without
// the loader (its Type is then looked at).
const (
	KindUnknown Kind = iota
	KindAN
	KindID
	KindDT
	KindTM
	KindR
	KindB
	KindN // N0..N9
)

// KindOf returns the Kind of a Type string.
func KindOf(t string) Kind {
	switch t {
	case "AN":
		return KindAN
	case "ID":
		return KindID
	case "DT":
		return KindDT
	case "TM":
		return KindTM
	case "R":
		return KindR
	case "B":
		return KindB
	}
	if len(t) >= 1 && t[0] == 'N' {
		return KindN
	}
	return KindUnknown
}

// TypeKind is e.Kind, or the Kind of e.Type when the loader did not set it.
func (e *Element) TypeKind() Kind {
	if e.Kind != KindUnknown {
		return e.Kind
	}
	return KindOf(e.Type)
}

// codeSet is a closed code list compiled for lookups from []byte without a
// string conversion or a string hash: X12 codes are 1 to 3 characters almost
// always, so each packs into a uint64 (bytes little-endian, zero padded;
// data never holds a zero byte, the validator rejects control characters
// first), looked up in an open-addressing table (lists run to hundreds of
// codes: unit-of-measure, product-ID qualifiers).
type codeSet struct {
	table []uint64          // power-of-two size, 0 = empty slot; nil when a code is longer than 8 bytes
	shift uint8             // 64 - log2(len(table))
	codes map[string]string // the list itself when table is nil
}

func compileCodes(codes map[string]string) *codeSet {
	if codes == nil {
		return nil
	}
	size, shift := 4, uint8(62)
	for size < 2*len(codes) {
		size, shift = size*2, shift-1
	}
	cs := &codeSet{table: make([]uint64, size), shift: shift}
	for c := range codes {
		k, ok := pack([]byte(c))
		if !ok {
			return &codeSet{codes: codes}
		}
		i := cs.slot(k)
		for cs.table[i] != 0 && cs.table[i] != k {
			i = (i + 1) & (len(cs.table) - 1)
		}
		cs.table[i] = k
	}
	return cs
}

func (cs *codeSet) slot(k uint64) int { return int((k * 0x9E3779B97F4A7C15) >> cs.shift) } // Check.Coded hashes alike

func pack(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 8 {
		return 0, false
	}
	var k uint64
	for i, c := range v {
		k |= uint64(c) << (8 * i)
	}
	return k, true
}

func (cs *codeSet) has(v []byte) bool {
	if cs.table == nil {
		_, ok := cs.codes[string(v)]
		return ok
	}
	n := len(v)
	if n == 0 || n > 8 {
		return false
	}
	var k uint64
	if cap(v) >= 8 {
		// one load from the buffer behind v (a segment's bytes always have
		// more behind them), the bytes past v masked off
		k = binary.LittleEndian.Uint64(v[:8]) & (^uint64(0) >> (64 - 8*n))
	} else {
		k, _ = pack(v)
	}
	for i := cs.slot(k); ; i = (i + 1) & (len(cs.table) - 1) {
		switch cs.table[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
}

// HasCode reports whether this position has a closed code list (closed) and
// whether v is on it. It is AllowedCodes()[v] without allocating.
func (r *ElementRef) HasCode(v []byte) (closed, ok bool) {
	if r.compiled {
		if r.codes == nil {
			return false, false
		}
		return true, r.codes.has(v)
	}
	codes := r.AllowedCodes()
	if codes == nil {
		return false, false
	}
	_, ok = codes[string(v)]
	return true, ok
}

// compile fills the lookup structures of r (and of its composite's
// components) from the code lists now in force. Refs built by the loader
// and by Apply are compiled; a ref changed afterwards must be compiled again.
func (r *ElementRef) compile() {
	r.codes = compileCodes(r.AllowedCodes())
	r.compiled = true
	if r.Composite != nil {
		for _, c := range r.Composite.Components {
			c.compile()
		}
	}
}

// Check is one position of a segment definition compiled for the
// validator's common case, a valid simple value: what it needs of the
// ElementRef and its Element side by side in one slice, so that checking a
// segment's values walks one array instead of two pointers per position.
type Check struct {
	// Kind is the element's type; KindUnknown when the value needs the
	// full check (a composite, a position not used, an unknown type).
	Kind     Kind
	shift    uint8 // codes.shift
	Min, Max int
	codes    *codeSet // the closed code list (KindID), or nil
	table    []uint64 // codes.table, read by Coded without going through codes
}

// HasCode is ElementRef.HasCode for the position.
func (c *Check) HasCode(v []byte) (closed, ok bool) {
	if c.codes == nil {
		return false, false
	}
	return true, c.codes.has(v)
}

// Coded reports whether v is on the position's closed code list when one of
// the first two slots of its table holds it, as it does for most codes;
// false leaves the answer to HasCode. It makes no call, so that a loop over a
// segment's values keeps its registers.
func (c *Check) Coded(v []byte) bool {
	if c.table == nil || len(v) == 0 || len(v) > 8 || cap(v) < 8 {
		return false
	}
	k := binary.LittleEndian.Uint64(v[:8]) & (^uint64(0) >> (64 - 8*len(v)))
	i := int((k * 0x9E3779B97F4A7C15) >> c.shift)
	// The code's own slot, or the next one, where most of the codes
	// that collided went (the table is at most half full).
	return c.table[i] == k || c.table[(i+1)&(len(c.table)-1)] == k
}

// Closed reports whether the position has a closed code list.
func (c *Check) Closed() bool { return c.codes != nil }

// Checks returns one Check per position (index 0: position 1), or nil when
// the segment was not compiled by the loader or Apply (then every value
// needs the full check). Shared: read-only.
func (s *Segment) Checks() []Check { return s.checks }

var segSeq atomic.Uint32

func (s *Segment) compile() {
	s.seq = segSeq.Add(1)
	s.mandMask, s.masked = 0, len(s.Elements) < 64
	s.checks = make([]Check, len(s.Elements))
	for i, r := range s.Elements {
		r.compile()
		if r.Usage == Mandatory && i+1 < 64 {
			s.mandMask |= 1 << (i + 1)
		}
		if el := r.Element; el != nil && r.Usage != NotUsed {
			s.checks[i] = Check{Kind: el.TypeKind(), Min: el.Min, Max: el.Max, codes: r.codes}
			if r.codes != nil {
				s.checks[i].table, s.checks[i].shift = r.codes.table, r.codes.shift
			}
		}
	}
}

func (l *Loop) compile() {
	for _, n := range l.Children {
		if n.Loop != nil {
			n.Loop.compile()
		} else if n.Segment != nil {
			n.Segment.compile()
		}
	}
}
