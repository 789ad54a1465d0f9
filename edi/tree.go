package edi

import (
	"iter"
	"strconv"

	"github.com/edigw/edigw/edi/spec"
)

// Node is one loop instance of a transaction set's loop tree. The root is
// the set itself (ID ""); other loops are named "<loop>_loop" (N1_loop,
// PO1_loop) and 856 HL loops "HL_<HL03>" (HL_S, HL_O, HL_P, HL_I ...), nested
// by their HL02 parent.
type Node struct {
	ID    string
	Items []Item // segments and child loops in order
}

// Item is a segment or a child loop of a Node.
type Item struct {
	Segment *Segment
	Def     *spec.Segment // the segment's definition (for element names and composites)
	Loop    *Node
}

// Segments yields the node's segments and those of its loops, depth first
// in document order (none for a nil node).
func (n *Node) Segments() iter.Seq[*Segment] {
	return func(yield func(*Segment) bool) { n.eachSegment(yield) }
}

func (n *Node) eachSegment(yield func(*Segment) bool) bool {
	if n == nil {
		return true
	}
	for i := range n.Items {
		it := &n.Items[i]
		if it.Loop != nil {
			if !it.Loop.eachSegment(yield) {
				return false
			}
		} else if !yield(it.Segment) {
			return false
		}
	}
	return true
}

// treeBuilder allocates nodes and segment copies in chunks that are reused
// from set to set. The copies refer to the reader's arrays for their bytes
// and element ends: Process makes the reader hold them (Reader.hold) until
// OnSet returns.
type treeBuilder struct {
	nodes    [][]Node
	nn       int
	segs     [][]Segment
	ns       int
	rootNode *Node
}

const chunk = 256

func (t *treeBuilder) reset() {
	t.nn, t.ns = 0, 0
	t.rootNode = t.newLoop("")
}

func (t *treeBuilder) root() *Node { return t.rootNode }

func (t *treeBuilder) newLoop(id string) *Node {
	i, j := t.nn/chunk, t.nn%chunk
	if i == len(t.nodes) {
		t.nodes = append(t.nodes, make([]Node, chunk))
	}
	t.nn++
	n := &t.nodes[i][j]
	n.ID = id
	n.Items = n.Items[:0]
	return n
}

func (t *treeBuilder) addLoop(parent, n *Node) {
	parent.Items = append(parent.Items, Item{Loop: n})
}

func (t *treeBuilder) addSegment(n *Node, seg *Segment, def *spec.Segment) {
	i, j := t.ns/chunk, t.ns%chunk
	if i == len(t.segs) {
		t.segs = append(t.segs, make([]Segment, chunk))
	}
	t.ns++
	s := &t.segs[i][j]
	seg.cloneHeld(s)
	n.Items = append(n.Items, Item{Segment: s, Def: def})
}

// AppendJSON appends the node as a JSON object: each key (segment tag or
// loop name) maps to an array, in order of first appearance.
func (n *Node) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	done := map[string]bool{}
	first := true
	for k, it := range n.Items {
		key := it.key()
		if done[key] {
			continue
		}
		done[key] = true
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, key)
		b = append(b, ':', '[')
		sep := false
		for _, o := range n.Items[k:] {
			if o.key() != key {
				continue
			}
			if sep {
				b = append(b, ',')
			}
			sep = true
			if o.Loop != nil {
				b = o.Loop.AppendJSON(b)
			} else {
				b = appendSegmentJSON(b, o.Segment, o.Def)
			}
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (it Item) key() string {
	if it.Loop != nil {
		return it.Loop.ID
	}
	return it.Segment.TagString()
}

// appendSegmentJSON writes {"pos":N,"REF01":"BM",...}: empty elements are
// left out; a composite is an array of its components; a repeated element
// (repetition separator) is an array of its repetitions.
func appendSegmentJSON(b []byte, s *Segment, def *spec.Segment) []byte {
	b = append(b, `{"pos":`...)
	b = strconv.AppendInt(b, int64(s.Pos.InSet), 10)
	tag := s.TagString()
	var parts [][]byte
	for i := 1; i <= s.Len(); i++ {
		v := s.Element(i)
		if len(v) == 0 {
			continue
		}
		b = append(b, ',')
		b = appendJSONString(b, tag+pad2(i))
		b = append(b, ':')
		composite := false
		repeat := 1
		if def != nil && i <= len(def.Elements) {
			composite = def.Elements[i-1].Composite != nil
			repeat = def.Elements[i-1].Repeat
		}
		reps := 1
		if s.delim.Repetition != 0 {
			reps = countByte(v, s.delim.Repetition) + 1
		}
		if repeat > 1 || reps > 1 {
			b = append(b, '[')
			for r := 1; r <= reps; r++ {
				if r > 1 {
					b = append(b, ',')
				}
				b = appendValue(b, s, nth(v, s.delim.Repetition, r), composite, &parts)
			}
			b = append(b, ']')
			continue
		}
		b = appendValue(b, s, v, composite, &parts)
	}
	return append(b, '}')
}

func appendValue(b []byte, s *Segment, v []byte, composite bool, parts *[][]byte) []byte {
	if !composite && countByte(v, s.delim.Component) == 0 {
		return appendJSONString(b, v)
	}
	*parts = s.Components((*parts)[:0], v)
	b = append(b, '[')
	for k, p := range *parts {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p)
	}
	return append(b, ']')
}

func pad2(i int) string {
	if i < 10 {
		return "0" + strconv.Itoa(i)
	}
	return strconv.Itoa(i)
}
