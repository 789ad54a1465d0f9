// Package spec holds the data-driven X12 transaction-set specifications that
// edi validates against: a data-element and segment dictionary per version
// and the segment/loop structure of each supported transaction set.
//
// Specs are loaded from embedded YAML (data/*.yaml), never hand-coded per set.
// They are composable: a partner guide overlay (see Overlay) is applied to a
// copy of a Set without touching the shared dictionary.
package spec

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Usage is the requirement designator of a segment, loop or element.
type Usage byte

const (
	Mandatory   Usage = 'M'
	Optional    Usage = 'O'
	Conditional Usage = 'X' // governed by a segment syntax rule
	NotUsed     Usage = 'N' // only set by overlays: must not be present
)

// Element is a simple data element from the dictionary (e.g. 143).
type Element struct {
	ID   string // data element reference number, e.g. "143"
	Name string
	// Type is AN, ID, DT, TM, R, B or Nn (N0..N9: implied decimal places).
	Type     string
	Kind     Kind // Type compiled (set by the loader)
	Decimals int  // for Nn
	Min, Max int
	// Codes, when non-nil, is the closed list of valid values (ID elements).
	Codes map[string]string
}

// Composite is a composite data structure (e.g. C040) made of components.
type Composite struct {
	ID         string
	Name       string
	Components []*ElementRef
}

// ElementRef is one position in a segment or composite.
type ElementRef struct {
	Element   *Element   // nil when Composite is set
	Composite *Composite // nil for a simple element
	Usage     Usage
	Repeat    int // maximum repetitions (005010+); 1 when not repeatable
	// Codes overrides Element.Codes for this position (a subset), or nil.
	Codes map[string]string
	// Since is the first version ("005010") in which this position exists; ""
	// means all versions.
	Since string

	compiled bool     // codes reflects the code lists (see compile)
	codes    *codeSet // AllowedCodes compiled; nil when any value is allowed
}

// SyntaxRule is an X12 segment syntax note such as P0102 or C0405.
type SyntaxRule struct {
	Kind      byte  // P paired, R required, E exclusion, C conditional, L list conditional
	Positions []int // 1-based element positions
	Text      string
	mask      uint64 // Positions as bits, set by the loader
}

// Mask is the rule's positions as a bitmask (bit p set for position p).
func (r *SyntaxRule) Mask() uint64 {
	if r.mask != 0 {
		return r.mask
	}
	var m uint64
	for _, p := range r.Positions {
		if p < 64 {
			m |= 1 << p
		}
	}
	return m
}

// Segment is a segment definition from the dictionary.
type Segment struct {
	ID       string
	Name     string
	Elements []*ElementRef
	Syntax   []SyntaxRule

	mandMask uint64  // bit p set when position p is mandatory (see compile)
	masked   bool    // mandMask is valid: compiled, and fewer than 64 positions
	seq      uint32  // set by compile; see Seq
	checks   []Check // see Checks
}

// Seq is a number that tells compiled segment definitions apart (0 when not
// compiled; numbers repeat only after 2^32 compilations): callers index
// small per-definition caches with it.
func (s *Segment) Seq() uint32 { return s.seq }

// MandatoryMask returns the mandatory positions as bits (bit p for position
// p), and false when it is not available (more than 63 positions, or a
// Segment not built by the loader).
func (s *Segment) MandatoryMask() (uint64, bool) { return s.mandMask, s.masked }

// Node is one entry of a transaction set's structure: a segment or a loop.
type Node struct {
	Segment *Segment // set for a segment entry
	Loop    *Loop    // set for a loop entry
	Usage   Usage
	Max     int // maximum use (segment) or repeat (loop); 0 = unbounded (>1)
	// Pos is the standard position number ("0100"), informational.
	Pos string
}

// Tag is the segment tag that starts this node.
func (n *Node) Tag() string {
	if n.Loop != nil {
		return n.Loop.Children[0].Segment.ID
	}
	return n.Segment.ID
}

// Loop is a loop: its first child is the loop's leading segment.
type Loop struct {
	ID       string // loop identifier as written in AK303/IK303, e.g. "N1", "PO1", "HL"
	Children []*Node

	tagsOnce   sync.Once
	tagsReady  atomic.Bool // tagsOnce has run: Index and TreeName need no call
	tags       []string
	keys       []uint32
	name       string
	mandBefore []int32  // mandBefore[k]: mandatory children before child k
	suffix     []uint64 // suffix[k]: KeyBit of the tags of children k and after
	index      Index
}

// KeyBit is the bit of a TagKey in a loop's tag filter (see Index).
func KeyBit(k uint32) uint64 { return 1 << ((k * 0x9E3779B1) >> 26) }

// Index is what the validator needs of a loop for every segment it reads,
// computed once per loop: the TagKey of each child's leading tag; Suffix[k],
// the KeyBit of every tag at child k and after (a zero AND with KeyBit(key)
// means no child from k on leads with that tag, and the children need not
// be compared); and MandBefore[k], the number of mandatory children before
// child k (so whether a skipped range held one is a subtraction).
type Index struct {
	Keys       []uint32
	Suffix     []uint64
	MandBefore []int32
	// at maps each distinct key to the children it leads (bit k: child k)
	// in an open-addressing table, so that Find costs a probe or two
	// instead of a scan of Keys; nil when the loop has more than 64
	// children (Find then scans).
	at    []keyChildren
	shift uint8 // 64 - log2(len(at))
}

// keyChildren is one slot of Index.at; key 0 (no TagKey) marks it empty.
type keyChildren struct {
	key      uint32
	children uint64
}

func (x *Index) slot(k uint32) int { return int((uint64(k) * 0x9E3779B97F4A7C15) >> x.shift) }

// Find returns the first child at or after from whose leading tag has the
// TagKey k, or -1.
func (x *Index) Find(k uint32, from int) int {
	if x.at == nil {
		for j := from; j < len(x.Keys); j++ {
			if x.Keys[j] == k {
				return j
			}
		}
		return -1
	}
	for i := x.slot(k); ; i = (i + 1) & (len(x.at) - 1) {
		s := &x.at[i]
		if s.key == k {
			if m := s.children & (^uint64(0) << uint(from)); m != 0 {
				return bits.TrailingZeros64(m)
			}
			return -1
		}
		if s.key == 0 {
			return -1
		}
	}
}

// buildAt fills x.at from x.Keys (up to 64 children).
func (x *Index) buildAt() {
	if len(x.Keys) > 64 {
		return
	}
	size, shift := 4, uint8(62)
	for size < 2*len(x.Keys) {
		size, shift = size*2, shift-1
	}
	x.at, x.shift = make([]keyChildren, size), shift
	for j, k := range x.Keys {
		if k == 0 {
			continue // a tag no segment can have (TagKey 0): never found
		}
		i := x.slot(k)
		for x.at[i].key != 0 && x.at[i].key != k {
			i = (i + 1) & (size - 1)
		}
		x.at[i].key = k
		x.at[i].children |= 1 << j
	}
}

// Index returns the loop's Index (shared: read-only).
func (l *Loop) Index() *Index {
	if !l.tagsReady.Load() {
		l.Tags()
	}
	return &l.index
}

// Tags returns the leading segment tag of each child, in order (computed
// once: the validator compares against it for every segment it reads).
func (l *Loop) Tags() []string {
	l.tagsOnce.Do(func() {
		l.tags = make([]string, len(l.Children))
		l.keys = make([]uint32, len(l.Children))
		l.mandBefore = make([]int32, len(l.Children)+1)
		for i, c := range l.Children {
			l.tags[i] = c.Tag()
			l.keys[i] = TagKey([]byte(l.tags[i]))
			l.mandBefore[i+1] = l.mandBefore[i]
			if c.Usage == Mandatory {
				l.mandBefore[i+1]++
			}
		}
		l.suffix = make([]uint64, len(l.Children)+1)
		for i := len(l.Children) - 1; i >= 0; i-- {
			l.suffix[i] = l.suffix[i+1] | KeyBit(l.keys[i])
		}
		l.name = l.ID + "_loop"
		l.index = Index{Keys: l.keys, Suffix: l.suffix, MandBefore: l.mandBefore}
		l.index.buildAt()
		l.tagsReady.Store(true)
	})
	return l.tags
}

// TagKey packs a segment tag of up to three bytes into an integer (longer
// tags, which no X12 segment has, never match: 0).
func TagKey(tag []byte) uint32 {
	if len(tag) == 0 || len(tag) > 3 {
		return 0
	}
	k := uint32(len(tag))
	for _, c := range tag {
		k = k<<8 | uint32(c)
	}
	return k
}

// TreeName is the loop's key in loop trees: "<ID>_loop".
func (l *Loop) TreeName() string {
	if !l.tagsReady.Load() {
		l.Tags()
	}
	return l.name
}

// Set is one transaction set in one version.
type Set struct {
	ID              string // "850"
	Name            string
	FunctionalGroup string // GS01 code, e.g. "PO"
	Version         string // "004010" or "005010"
	Root            *Loop  // pseudo-loop holding ST .. SE; Root.ID == ""
	// HL is true when the set nests HL loops by HL02 (856).
	HL bool
}
