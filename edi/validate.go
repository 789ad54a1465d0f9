package edi

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/edigw/edigw/edi/spec"
)

// frame is one open loop instance while a set is matched against its spec.
type frame struct {
	loop        *spec.Loop
	*spec.Index     // the loop's Keys, Suffix and MandBefore (shared, read-only)
	idx         int // index of the child matched last
	// from is the first child the next segment can match here, and ahead
	// its Suffix[from]: kept with idx (see at), so that a frame the tag
	// cannot match is passed over with one load, not four dependent ones.
	from   int
	ahead  uint64
	counts []int32 // uses of each child in this instance
	node   *Node   // tree instance, when building trees
}

// at makes idx the child matched last; inner: the frame is not the set's.
func (f *frame) at(idx int, inner bool) {
	f.idx = idx
	f.from = max(idx, 0)
	if inner && f.from == 0 {
		f.from = 1 // the leading segment again means a new loop instance, decided by the parent
	}
	f.ahead = f.Suffix[f.from]
}

// syntaxPass is a segment definition and a set of present positions that
// passed its syntax rules.
type syntaxPass struct {
	def     *spec.Segment
	present uint64
}

// validator matches the segments of one transaction set against its spec,
// checks their elements, and optionally builds the loop tree. It is reused
// from set to set so that a long stream allocates little.
type validator struct {
	dict   *spec.Dictionary
	set    *spec.Set
	res    *SetResult
	family string
	stack  []frame
	tags   map[string]bool // every segment tag the set's spec uses

	buildTree bool
	tb        treeBuilder
	hl        hlIDs // HL01 values and their instances (856)

	segErrs int
	// syntaxOK remembers, per segment definition (by Seq), the last two
	// sets of present positions that passed its syntax rules (with one,
	// a definition whose patterns alternate in a set missed every time).
	syntaxOK [256][2]syntaxPass
	elems    []Finding // element findings of the current segment
	parts    [][]byte
}

var setTags sync.Map // *spec.Set -> map[string]bool

func tagsOf(s *spec.Set) map[string]bool {
	if m, ok := setTags.Load(s); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	var walk func(l *spec.Loop)
	walk = func(l *spec.Loop) {
		for _, c := range l.Children {
			if c.Loop != nil {
				walk(c.Loop)
			} else {
				m[c.Segment.ID] = true
			}
		}
	}
	walk(s.Root)
	setTags.Store(s, m)
	return m
}

func (v *validator) reset(dict *spec.Dictionary, s *spec.Set, res *SetResult, tree bool, family string) {
	v.dict, v.set, v.res, v.family = dict, s, res, family
	v.segErrs = 0
	v.buildTree = tree && s != nil
	v.stack = v.stack[:0]
	v.hl.reset()
	if s == nil {
		return
	}
	v.tags = tagsOf(s)
	if v.buildTree {
		v.tb.reset()
	}
	v.push(s.Root, v.tb.root())
	v.stack[0].at(-1, false)
	v.stack[0].counts[0] = 0
}

func (v *validator) push(l *spec.Loop, n *Node) {
	if len(v.stack) < cap(v.stack) {
		v.stack = v.stack[:len(v.stack)+1]
	} else {
		v.stack = append(v.stack, frame{})
	}
	f := &v.stack[len(v.stack)-1]
	f.loop, f.Index, f.node = l, l.Index(), n
	f.at(0, true)
	if cap(f.counts) < len(l.Children) {
		f.counts = make([]int32, len(l.Children))
	}
	f.counts = f.counts[:len(l.Children)]
	clear(f.counts)
	f.counts[0] = 1
}

func (v *validator) add(f Finding) {
	if len(v.res.Findings) < maxFindingsPerSet {
		v.res.Findings = append(v.res.Findings, f)
	}
}

func (v *validator) segFinding(seg *Segment, code, loopID, msg string) Finding {
	return Finding{Level: LevelSegment, Code: code, Pos: seg.Pos, SegmentID: seg.TagString(), LoopID: loopID, Msg: msg}
}

// loopID is the identifier reported in AK303 for segments of this frame.
func loopID(f *frame) string { return f.loop.ID }

// segment matches one segment of the set (ST and SE included).
func (v *validator) segment(seg *Segment) {
	if v.set == nil {
		return
	}
	key := spec.TagKey(seg.Tag())
	bit := spec.KeyBit(key)
	// Search the innermost open loop first, then its parents: X12 matching.
	for d := len(v.stack) - 1; d >= 0; d-- {
		f := &v.stack[d]
		if f.ahead&bit == 0 {
			continue // no child from here on has this tag
		}
		// Most segments repeat the child matched last (REF after REF) or
		// follow it directly: compared here before Find probes its table.
		j := f.from
		if f.Keys[j] != key {
			if j++; j >= len(f.Keys) || f.Keys[j] != key {
				if j = f.Find(key, j); j < 0 {
					continue
				}
			}
		}
		v.matched(seg, d, j)
		return
	}
	v.unmatched(seg)
}

func (v *validator) matched(seg *Segment, d, j int) {
	// Close the loops above d, then account for what was skipped at d.
	for len(v.stack)-1 > d {
		v.closeFrame(seg, &v.stack[len(v.stack)-1], len(v.stack[len(v.stack)-1].loop.Children))
		v.stack = v.stack[:len(v.stack)-1]
	}
	f := &v.stack[d]
	if j != f.idx {
		if from := f.idx + 1; from < j && f.MandBefore[j] != f.MandBefore[from] {
			v.missing(seg, f, from, j) // a mandatory child was skipped
		}
		f.at(j, d > 0)
	}
	f.counts[j]++
	c := f.loop.Children[j]
	over := c.Max > 0 && int(f.counts[j]) > c.Max
	if c.Loop == nil {
		if over {
			v.add(v.segFinding(seg, SegOverMaxUse, loopID(f), fmt.Sprintf("%s used %d times, at most %d allowed here", c.Segment.ID, f.counts[j], c.Max)))
			v.segErrs++
			return
		}
		v.checkSegment(seg, c.Segment, loopID(f))
		if v.buildTree {
			v.tb.addSegment(f.node, seg, c.Segment)
		}
		return
	}
	// A new instance of a child loop.
	if over {
		v.add(v.segFinding(seg, SegLoopOverMax, c.Loop.ID, fmt.Sprintf("loop %s occurs %d times, at most %d allowed", c.Loop.ID, f.counts[j], c.Max)))
		v.segErrs++
	}
	var n *Node
	if v.buildTree {
		n = v.tb.newLoop(c.Loop.TreeName())
	}
	v.push(c.Loop, n)
	lead := c.Loop.Children[0].Segment
	ok := v.checkSegment(seg, lead, c.Loop.ID)
	if lead.ID == "HL" && v.set.HL {
		v.hlLink(seg, f, n, ok)
	} else if v.buildTree {
		v.tb.addLoop(f.node, n)
	}
	if v.buildTree {
		v.tb.addSegment(n, seg, lead)
	}
}

// hlIDs records the HL01 values of a set and their tree instances. Numeric
// ids (nearly all files number HLs 1, 2, 3 ...) index a slice; others fall
// back to a map, so the common case allocates nothing per HL.
type hlIDs struct {
	num   []hlEntry
	used  int
	other map[string]hlEntry
}

type hlEntry struct {
	seen bool
	node *Node
}

func (h *hlIDs) reset() {
	clear(h.num[:h.used])
	h.used = 0
	clear(h.other)
}

const maxHLIndex = 1 << 20

func hlNumber(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 7 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n < maxHLIndex
}

// get returns the record of HL01 id, whose hlNumber is n, ok.
func (h *hlIDs) get(id []byte, n int, ok bool) hlEntry {
	if ok {
		if n < len(h.num) {
			return h.num[n]
		}
		return hlEntry{}
	}
	return h.other[string(id)]
}

// set records HL01 id, whose hlNumber is n, ok.
func (h *hlIDs) set(id []byte, n int, ok bool, e hlEntry) {
	if ok {
		if n >= len(h.num) {
			h.num = append(h.num, make([]hlEntry, n+1-len(h.num)+len(h.num)/2)...)
		}
		h.num[n] = e
		h.used = max(h.used, n+1)
		return
	}
	if h.other == nil {
		h.other = map[string]hlEntry{}
	}
	h.other[string(id)] = e
}

// hlName is the tree name of an HL loop by its level code (HL03).
func hlName(code []byte) string {
	switch string(code) {
	case "S":
		return "HL_S"
	case "O":
		return "HL_O"
	case "P":
		return "HL_P"
	case "T":
		return "HL_T"
	case "I":
		return "HL_I"
	case "F":
		return "HL_F"
	}
	return "HL_" + string(code)
}

// hlLink nests an HL loop instance under the instance named by HL02.
func (v *validator) hlLink(seg *Segment, f *frame, n *Node, ok bool) {
	id, parent := seg.Element(1), seg.Element(2)
	bad := func(el int, ref, msg string) {
		v.add(v.segFinding(seg, SegElementErrors, "HL", msg))
		v.add(Finding{Level: LevelElement, Code: ElBadCode, Pos: seg.Pos, SegmentID: "HL", LoopID: "HL", Element: el,
			ElementRef: ref, Value: clip(seg.Element(el)), Msg: msg})
		v.segErrs++
	}
	self := len(parent) > 0 && string(parent) == string(id)
	var pe hlEntry
	if len(parent) > 0 {
		pn, pok := hlNumber(parent)
		pe = v.hl.get(parent, pn, pok)
	}
	// HL01 is parsed once for the lookup and the record.
	idn, idok := hlNumber(id)
	switch {
	case !ok:
	case v.hl.get(id, idn, idok).seen:
		bad(1, "628", fmt.Sprintf("HL01 %q is used twice in the set", id))
	case self:
		bad(2, "734", fmt.Sprintf("HL02 %q refers to itself", parent))
	case len(parent) > 0 && !pe.seen:
		bad(2, "734", fmt.Sprintf("HL02 parent %q is not an HL01 defined before this HL", parent))
	}
	v.hl.set(id, idn, idok, hlEntry{seen: true, node: n})
	if n != nil {
		n.ID = hlName(seg.Element(3))
		if pe.node != nil && !self {
			v.tb.addLoop(pe.node, n)
		} else {
			v.tb.addLoop(f.node, n)
		}
	}
}

// missing reports mandatory children of f in [from, to) that were not used.
func (v *validator) missing(seg *Segment, f *frame, from, to int) {
	if from >= to || f.MandBefore[to] == f.MandBefore[from] {
		return // no mandatory child in [from, to)
	}
	for k := from; k < to; k++ {
		c := f.loop.Children[k]
		if c.Usage == spec.Mandatory && f.counts[k] == 0 {
			msg := fmt.Sprintf("mandatory segment %s is missing before %s", c.Tag(), seg.Tag())
			if c.Loop != nil {
				msg = fmt.Sprintf("mandatory loop %s is missing before %s", c.Loop.ID, seg.Tag())
			}
			fd := v.segFinding(seg, SegMandatory, loopID(f), msg)
			fd.SegmentID = c.Tag()
			v.add(fd)
			v.segErrs++
		}
	}
}

func (v *validator) closeFrame(seg *Segment, f *frame, to int) {
	v.missing(seg, f, f.idx+1, to)
}

// unmatched classifies a segment that fits nowhere from the current state.
func (v *validator) unmatched(seg *Segment) {
	tag := seg.Tag()
	top := &v.stack[len(v.stack)-1]
	code, msg := SegUnexpected, fmt.Sprintf("segment %s is not expected here", tag)
	switch {
	case v.dict.Segment(string(tag)) == nil:
		code, msg = SegUnrecognized, fmt.Sprintf("segment ID %q is not an X12 segment", tag)
	case !v.tags[string(tag)]:
		code, msg = SegNotInSet, fmt.Sprintf("segment %s is not defined in transaction set %s", tag, v.set.ID)
	default:
		for d := len(v.stack) - 1; d >= 0; d-- {
			f := &v.stack[d]
			for j := 0; j < f.idx && j < len(f.loop.Children); j++ {
				if c := f.loop.Children[j]; c.Loop == nil && c.Segment.ID == string(tag) {
					code, msg = SegOutOfSequence, fmt.Sprintf("segment %s is out of sequence (it belongs before %s)", tag, f.loop.Children[f.idx].Tag())
				}
			}
		}
	}
	v.add(v.segFinding(seg, code, loopID(top), msg))
	v.segErrs++
}

// finish closes the open loops at the end of the set.
func (v *validator) finish(sawSE bool) {
	if v.set == nil {
		return
	}
	v.stack = v.stack[:0]
}

func (v *validator) tree() *Node {
	if !v.buildTree {
		return nil
	}
	return v.tb.root()
}

// checkSegment validates the elements of a matched segment and reports them
// under one segment finding (AK3 code 8). It returns true when they are valid.
func (v *validator) checkSegment(seg *Segment, def *spec.Segment, loop string) bool {
	v.elems = v.elems[:0]
	if id := def.ID; len(id) == 2 && id[0] == 'S' && (id[1] == 'T' || id[1] == 'E') {
		return true // the envelope checks own ST and SE (AK5 codes 3, 4, 7)
	}
	n := seg.Len()
	// The segment's and the definition's slices in locals: read through
	// seg and def, they were loaded again for every element (the loop
	// makes calls).
	ends, raw, refs := seg.ends, seg.data, def.Elements
	checks := def.Checks()
	if !seg.plain {
		checks = nil // every value needs its byte scans
	}
	var present uint64 // bit p: position p (below 64) is not empty
	// The present elements, then the mandatory ones that are absent
	// (findings are sorted by position below): segments such as LIN define
	// 31 positions and use 3 to 5.
	for pos := 1; pos < len(ends); pos++ {
		if checks != nil {
			if pos, present = quickValid(checks, ends, raw, pos, present); pos == len(ends) {
				break
			}
		}
		lo, hi := int(ends[pos-1])+1, int(ends[pos])
		if hi <= lo {
			continue // empty
		}
		if pos < 64 {
			present |= 1 << pos
		}
		if pos > len(refs) {
			v.elemErr(seg, pos, 0, 0, "", ElTooMany, seg.Element(pos), fmt.Sprintf("is beyond the %d elements %s defines", len(refs), def.ID))
			break
		}
		val := raw[lo:hi]
		// The common cases, valid values of a plain segment, are decided
		// here without the calls of checkElement (which also reports what
		// is wrong).
		if pos <= len(checks) {
			c := &checks[pos-1]
			switch nv := len(val); c.Kind {
			case spec.KindAN:
				if nv >= c.Min && nv <= c.Max {
					continue
				}
			case spec.KindID:
				if closed, ok := c.HasCode(val); ok || !closed && nv >= c.Min && nv <= c.Max {
					continue
				}
			case spec.KindN:
				d := val
				if d[0] == '-' {
					d = d[1:]
				}
				if digitsB(d) && len(d) >= c.Min && len(d) <= c.Max {
					continue
				}
			case spec.KindR:
				if nd, ok := realDigits(val); ok && nd >= c.Min && nd <= c.Max {
					continue
				}
			case spec.KindDT:
				if nv >= c.Min && nv <= c.Max && validDate(val) {
					continue
				}
			case spec.KindTM:
				if nv >= c.Min && nv <= c.Max && validTime(val) {
					continue
				}
			}
		}
		v.checkElement(seg, pos, refs[pos-1], val, seg.plain)
	}
	if mand, ok := def.MandatoryMask(); !ok || mand&^present != 0 {
		for i, ref := range def.Elements {
			if ref.Usage == spec.Mandatory && (i >= n || seg.ends[i+1]-seg.ends[i] <= 1) {
				v.elemErr(seg, i+1, 0, 0, refID(ref), ElMandatory, nil, "is mandatory")
			}
		}
	}
	if len(def.Syntax) > 0 {
		// The syntax rules depend only on which positions are present, and
		// the segments of a file repeat a few patterns: a pattern found
		// clean for this definition is not checked again.
		m := &v.syntaxOK[def.Seq()%uint32(len(v.syntaxOK))]
		if p := (syntaxPass{def, present}); m[0] != p && m[1] != p {
			before := len(v.elems)
			v.checkSyntax(seg, def, present)
			if len(v.elems) == before {
				m[0], m[1] = p, m[0]
			}
		}
	}
	if len(v.elems) == 0 {
		return true
	}
	slices.SortStableFunc(v.elems, func(a, b Finding) int { return a.Element - b.Element })
	v.add(v.segFinding(seg, SegElementErrors, loop, fmt.Sprintf("%d data element error(s)", len(v.elems))))
	for _, f := range v.elems {
		f.LoopID = loop
		v.add(f)
	}
	v.segErrs++
	return false
}

// quickValid accepts the values of a plain segment from position pos on
// while each is decided valid without a call: AN, N, R and unlisted ID
// values by their lengths and digits, listed ID codes found at the first probe
// (Check.Coded). It returns the first position it did not accept (len(ends)
// at the end) and present with the bits of the non-empty positions it
// accepted. A loop without calls keeps its values in registers; with the
// calls of the full checks in it, the compiler reloaded half a dozen of them
// from the stack for every element.
func quickValid(checks []spec.Check, ends []int32, raw []byte, pos int, present uint64) (int, uint64) {
	// Positions past the checks, and past 63 (no bit in present), are the
	// caller's.
	last := min(len(ends)-1, len(checks), 63)
	if pos > last {
		return pos, present
	}
	end := int(ends[pos-1]) // the previous element's end
	for ; pos <= last; pos++ {
		lo, hi := end+1, int(ends[pos])
		end = hi
		nv := hi - lo
		if nv <= 0 {
			continue // empty
		}
		// Only the kinds that read the bytes slice the value.
		switch c := &checks[pos-1]; c.Kind {
		case spec.KindAN:
			if nv < c.Min || nv > c.Max {
				return pos, present
			}
		case spec.KindID:
			if c.Closed() {
				if !c.Coded(raw[lo:hi]) {
					return pos, present
				}
			} else if nv < c.Min || nv > c.Max {
				return pos, present
			}
		case spec.KindN:
			val := raw[lo:hi]
			if val[0] == '-' {
				val = val[1:]
			}
			if !digitsB(val) || len(val) < c.Min || len(val) > c.Max {
				return pos, present
			}
		case spec.KindR:
			// realDigits without its call, for the usual form: digits
			// and at most one decimal point (an exponent is left to it).
			val := raw[lo:hi]
			nd, dot := 0, false
			if val[0] == '-' {
				val = val[1:]
			}
			for _, b := range val {
				switch {
				case b >= '0' && b <= '9':
					nd++
				case b == '.' && !dot:
					dot = true
				default:
					return pos, present
				}
			}
			if nd == 0 || nd < c.Min || nd > c.Max {
				return pos, present
			}
		default:
			return pos, present
		}
		present |= 1 << pos
	}
	return pos, present
}

func clip(b []byte) string {
	if len(b) > 99 {
		b = b[:99]
	}
	return string(b)
}

func (v *validator) elemErr(seg *Segment, pos, comp, rep int, ref, code string, val []byte, msg string) {
	if len(v.elems) >= 99 { // AK4 may repeat 99 times
		return
	}
	name := fmt.Sprintf("%s%02d", seg.Tag(), pos)
	if comp > 0 {
		name += fmt.Sprintf("-%d", comp)
	}
	v.elems = append(v.elems, Finding{Level: LevelElement, Code: code, Pos: seg.Pos, SegmentID: seg.TagString(),
		Element: pos, Component: comp, Repetition: rep, ElementRef: ref, Value: clip(val), Msg: name + " " + msg})
}

// plainSegment reports whether raw holds neither the component nor the
// repetition separator and only printable ASCII (0x20..0x7E), eight bytes
// at a time: then no element of the segment needs its own byte scans.
func plainSegment(raw []byte, d Delimiters) bool {
	pc := uint64(d.Component) * swarOnes
	pr := uint64(d.Repetition) * swarOnes
	if d.Repetition == 0 {
		pr = pc
	}
	const hi = 0x8080808080808080
	// odd has the high bit of the lanes that may hold an odd byte: exact
	// for the first one (the borrows of the range tests only reach
	// lanes above a true hit).
	odd := func(w uint64) uint64 {
		xc, xr := w^pc, w^pr
		zc := ^((xc&swar7F + swar7F) | xc | swar7F)
		zr := ^((xr&swar7F + swar7F) | xr | swar7F)
		low := (w - 0x20*swarOnes) &^ w & hi // some byte < 0x20
		high := (w + swarOnes | w) & hi      // some byte > 0x7E
		return zc | zr | low | high
	}
	i := 0
	for ; i+8 <= len(raw); i += 8 {
		if odd(binary.LittleEndian.Uint64(raw[i:])) != 0 {
			return false
		}
	}
	if rest := len(raw) - i; rest > 0 && i+8 <= cap(raw) {
		// The last bytes are read as a whole word from the buffer behind
		// raw; the lanes past the end are not looked at (replacing them by
		// a harmless byte failed when that byte was the component
		// separator).
		w := binary.LittleEndian.Uint64(raw[i : i+8 : i+8])
		return odd(w)&(uint64(1)<<(8*rest)-1) == 0
	}
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == d.Component || (c == d.Repetition && d.Repetition != 0) || c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func (v *validator) checkElement(seg *Segment, pos int, ref *spec.ElementRef, val []byte, plain bool) {
	if len(val) == 0 {
		if ref.Usage == spec.Mandatory {
			v.elemErr(seg, pos, 0, 0, refID(ref), ElMandatory, nil, "is mandatory")
		}
		return
	}
	if ref.Usage == spec.NotUsed {
		v.elemErr(seg, pos, 0, 0, refID(ref), ElTooMany, val, "must not be used")
		return
	}
	// One pass tells whether repetition or component separators occur; the
	// common case (neither) goes straight to the value check.
	d := seg.delim
	reps, comps := 1, 0
	if !plain {
		for _, c := range val {
			if c == d.Component {
				comps++
			} else if c == d.Repetition && d.Repetition != 0 {
				reps++
			}
		}
	}
	if reps == 1 && comps == 0 && ref.Composite == nil {
		if code, msg := checkValue(ref, val, plain); code != "" {
			v.elemErr(seg, pos, 0, 0, refID(ref), code, val, msg)
		}
		return
	}
	if reps > max(ref.Repeat, 1) {
		v.elemErr(seg, pos, 0, 0, refID(ref), v.code(ElTooManyReps), val, fmt.Sprintf("repeats %d times, at most %d allowed", reps, max(ref.Repeat, 1)))
		return
	}
	for r := 1; r <= reps; r++ {
		rv := val
		rp := 0
		if reps > 1 {
			rv, rp = nth(val, d.Repetition, r), r
		}
		if ref.Composite == nil {
			if countByte(rv, d.Component) > 0 {
				v.elemErr(seg, pos, 0, rp, refID(ref), v.code(ElTooManyComps), rv, fmt.Sprintf("is a simple element but contains the component separator %q", d.Component))
				continue
			}
			if code, msg := checkValue(ref, rv, false); code != "" {
				v.elemErr(seg, pos, 0, rp, refID(ref), code, rv, msg)
			}
			continue
		}
		v.parts = seg.Components(v.parts[:0], rv)
		comps := ref.Composite.Components
		if len(v.parts) > len(comps) {
			v.elemErr(seg, pos, len(comps)+1, rp, refID(ref), v.code(ElTooManyComps), rv, fmt.Sprintf("(%s) has %d components, at most %d defined", ref.Composite.ID, len(v.parts), len(comps)))
			continue
		}
		for k, cref := range comps {
			var cv []byte
			if k < len(v.parts) {
				cv = v.parts[k]
			}
			if len(cv) == 0 {
				if cref.Usage == spec.Mandatory {
					v.elemErr(seg, pos, k+1, rp, refID(cref), ElMandatory, nil, "is mandatory")
				}
				continue
			}
			if code, msg := checkValue(cref, cv, false); code != "" {
				v.elemErr(seg, pos, k+1, rp, refID(cref), code, cv, msg)
			}
		}
	}
}

// code maps element codes that 004010 does not have to their nearest
// 004010 meaning: a delimiter where none may be is an invalid character.
func (v *validator) code(c string) string {
	if v.family == "004010" && (c == ElTooManyComps || c == ElTooManyReps) {
		return ElBadCharacter
	}
	return c
}

func refID(r *spec.ElementRef) string {
	if r.Element != nil {
		return r.Element.ID
	}
	return "" // AK402 carries data element numbers only
}

func countByte(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}

// checkSyntax applies the segment's syntax rules (P, R, E, C, L) with a
// bitmask of the elements present.
func (v *validator) checkSyntax(seg *Segment, def *spec.Segment, present uint64) {
	if len(def.Syntax) == 0 {
		return
	}
	ref := func(p int) string {
		if p-1 < len(def.Elements) {
			return refID(def.Elements[p-1])
		}
		return ""
	}
	name := func(p int) string { return fmt.Sprintf("%s%02d", def.ID, p) }
	for i := range def.Syntax {
		r := &def.Syntax[i]
		mask := r.Mask()
		got := present & mask
		if got == 0 && r.Kind != 'R' {
			continue // only "at least one required" can fail with none present
		}
		ps := r.Positions
		first := uint64(1) << ps[0]
		switch r.Kind {
		case 'P': // all or none
			if got != 0 && got != mask {
				for _, p := range ps {
					if present&(1<<p) == 0 {
						v.elemErr(seg, p, 0, 0, ref(p), ElConditional, nil, fmt.Sprintf("is required when any element of %s is present", r.Text))
					}
				}
			}
		case 'R': // at least one
			if got == 0 {
				v.elemErr(seg, ps[0], 0, 0, ref(ps[0]), ElConditional, nil, fmt.Sprintf("or another element of %s is required", r.Text))
			}
		case 'E': // at most one
			if bits.OnesCount64(got) > 1 {
				seen := 0
				for _, p := range ps {
					if present&(1<<p) != 0 {
						if seen++; seen > 1 {
							v.elemErr(seg, p, 0, 0, ref(p), ElExclusion, seg.Element(p), fmt.Sprintf("must not be present together with another element of %s", r.Text))
						}
					}
				}
			}
		case 'C': // if first, then all others
			if got&first != 0 && got != mask {
				for _, p := range ps[1:] {
					if present&(1<<p) == 0 {
						v.elemErr(seg, p, 0, 0, ref(p), ElConditional, nil, fmt.Sprintf("is required when %s is present (%s)", name(ps[0]), r.Text))
					}
				}
			}
		case 'L': // if first, then at least one other
			if got&first != 0 && got == first {
				v.elemErr(seg, ps[1], 0, 0, ref(ps[1]), ElConditional, nil, fmt.Sprintf("or another element of %s is required when %s is present", r.Text, name(ps[0])))
			}
		}
	}
}

// checkValue validates one simple value against the element definition at
// ref and returns an AK403 code and a message, or "" when it is valid.
// printable says the caller has already checked that every byte of v is in
// 0x20..0x7E (the whole segment at once).
func checkValue(ref *spec.ElementRef, v []byte, printable bool) (string, string) {
	el := ref.Element
	if el == nil {
		return "", ""
	}
	n := len(v)
	kind := el.TypeKind()
	switch kind {
	case spec.KindDT:
		if !digitsB(v) {
			return ElBadDate, fmt.Sprintf("%q is not a date", v)
		}
	case spec.KindTM:
		if !digitsB(v) {
			return ElBadTime, fmt.Sprintf("%q is not a time", v)
		}
	case spec.KindR:
		var ok bool
		n, ok = realDigits(v)
		if !ok {
			return ElBadCharacter, fmt.Sprintf("%q is not a decimal number", v)
		}
	case spec.KindB:
		return "", ""
	case spec.KindAN, spec.KindID:
		if !printable {
			for _, c := range v {
				if c < 0x20 || c > 0x7e {
					return ElBadCharacter, fmt.Sprintf("%q contains the invalid character %q", v, c)
				}
			}
		}
	default: // Nn
		d := v
		if len(d) > 0 && d[0] == '-' {
			d = d[1:]
		}
		if !digitsB(d) {
			return ElBadCharacter, fmt.Sprintf("%q is not a number (type %s)", v, el.Type)
		}
		n = len(d)
	}
	if kind == spec.KindID {
		if closed, ok := ref.HasCode(v); closed {
			if !ok {
				return ElBadCode, fmt.Sprintf("%q is not a valid code for data element %s (%s)", v, el.ID, el.Name)
			}
			return "", ""
		}
	}
	if n < el.Min {
		return ElTooShort, fmt.Sprintf("%q is shorter than the minimum length %d", v, el.Min)
	}
	if n > el.Max {
		return ElTooLong, fmt.Sprintf("%q is longer than the maximum length %d", v, el.Max)
	}
	switch kind {
	case spec.KindDT:
		if !validDate(v) {
			return ElBadDate, fmt.Sprintf("%q is not a valid date", v)
		}
	case spec.KindTM:
		if !validTime(v) {
			return ElBadTime, fmt.Sprintf("%q is not a valid time", v)
		}
	}
	return "", ""
}

func digitsB(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// realDigits checks an R value (optional sign, digits, one decimal point,
// optional exponent) and returns its length as X12 counts it (without sign
// and decimal point).
func realDigits(v []byte) (int, bool) {
	n, dot, i := 0, false, 0
	if i < len(v) && v[i] == '-' {
		i++
	}
	for ; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9':
			n++
		case c == '.' && !dot:
			dot = true
		case (c == 'E' || c == 'e') && n > 0 && i+1 < len(v):
			rest := v[i+1:]
			if rest[0] == '-' {
				rest = rest[1:]
			}
			if !digitsB(rest) {
				return 0, false
			}
			return n, true
		default:
			return 0, false
		}
	}
	return n, n > 0
}

// validDate checks CCYYMMDD (8 digits) or YYMMDD (6 digits).
func validDate(v []byte) bool {
	if !digitsB(v) {
		return false
	}
	var y, m, d int
	switch len(v) {
	case 8:
		y = atoi(v[:4])
		v = v[4:]
	case 6:
		y = 2000 + atoi(v[:2]) // only the leap-year rule depends on the century
		v = v[2:]
	default:
		return false
	}
	m, d = atoi(v[:2]), atoi(v[2:4])
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && (y%4 == 0 && (y%100 != 0 || y%400 == 0)) {
		days = 29
	}
	return d <= days
}

// validTime checks HHMM, HHMMSS and HHMMSSd..d.
func validTime(v []byte) bool {
	if !digitsB(v) || len(v) < 4 || len(v) == 5 || len(v) > 8 {
		return false
	}
	if atoi(v[:2]) > 23 || atoi(v[2:4]) > 59 {
		return false
	}
	return len(v) < 6 || atoi(v[4:6]) <= 59
}

func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}
