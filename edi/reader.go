// Package edi is edigw's X12 engine: a streaming reader and writer, envelope
// checks, validation against the transaction-set specs in edi/spec, loop
// trees, and 997/999/TA1 generation. It knows nothing about partners, files
// or networks.
package edi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"unsafe"
)

// Delimiters are the separators declared by one ISA segment.
type Delimiters struct {
	Element    byte
	Component  byte
	Repetition byte // 0 when the version has none (ISA12 below 00402: ISA11 is a standards identifier)
	Segment    byte
}

// DefaultDelimiters are the ones edigw writes when nothing else is chosen.
var DefaultDelimiters = Delimiters{Element: '*', Component: ':', Repetition: '^', Segment: '~'}

// Position says where something is in the input stream.
type Position struct {
	Offset  int64 // byte offset of the segment's first byte
	Segment int   // 1-based segment number in the stream
	// InSet is the 1-based position of the segment in its transaction set
	// (ST = 1), 0 outside a set. It is what AK302/IK302 report.
	InSet int
	ISA13 string
	GS06  string
	ST02  string
}

func (p Position) String() string {
	s := fmt.Sprintf("offset %d, segment %d", p.Offset, p.Segment)
	if p.ISA13 != "" {
		s += ", ISA13 " + p.ISA13
	}
	if p.GS06 != "" {
		s += ", GS06 " + p.GS06
	}
	if p.ST02 != "" {
		s += fmt.Sprintf(", ST02 %s, set position %d", p.ST02, p.InSet)
	}
	return s
}

// SyntaxError is an error that makes the stream unreadable from Pos on.
type SyntaxError struct {
	Pos Position
	Msg string
}

func (e *SyntaxError) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrNotX12 is wrapped by the error returned when the input does not start
// with an ISA segment (empty, CSV, garbage).
var ErrNotX12 = errors.New("not X12: no ISA segment")

// Tolerance is a deviation from the X12 syntax that the reader accepted on
// purpose. Each one is reported once per interchange so nothing is silent.
type Tolerance struct {
	Pos Position
	Msg string
}

// Segment is one segment. The bytes it refers to belong to the Reader and are
// valid until the next call to Next; use Clone to keep a segment.
type Segment struct {
	// data holds the segment from start on; the element ends index data
	// too (they are the reader's structural index of its buffer, handed
	// out without a copy).
	data  []byte
	start int     // index in data of the segment's first byte
	ends  []int32 // ends[i] = index in data just past element i (0 = tag)
	delim Delimiters
	// plain: the segment holds neither the component nor the repetition
	// separator and only printable ASCII (0x20..0x7E), so no element needs
	// its own byte scans in the validator (set when the reader's findPlain
	// is on).
	plain bool
	Pos   Position
}

// Tag is the segment identifier (element 0) as bytes; no allocation.
func (s *Segment) Tag() []byte { return s.data[s.start:s.ends[0]] }

// TagString returns the segment identifier as a string.
func (s *Segment) TagString() string { return string(s.Tag()) }

// Raw is the segment's bytes without the terminator.
func (s *Segment) Raw() []byte {
	if len(s.ends) == 0 {
		return nil // the zero Segment
	}
	return s.data[s.start:s.ends[len(s.ends)-1]]
}

// Delimiters are the ones in force for this segment.
func (s *Segment) Delimiters() Delimiters { return s.delim }

// Len is the number of data elements after the tag, counting interior empty
// ones and any trailing empty ones that were written.
func (s *Segment) Len() int { return len(s.ends) - 1 }

// Element returns data element i (1-based, as in REF02), or nil when absent.
// Components and repetitions are not split.
func (s *Segment) Element(i int) []byte {
	if i <= 0 || i >= len(s.ends) {
		return nil
	}
	return s.data[s.ends[i-1]+1 : s.ends[i]]
}

// Value returns element i as a string ("" when absent).
func (s *Segment) Value(i int) string { return string(s.Element(i)) }

// Repetitions returns the number of repetitions of element i (1 for a
// non-empty element without repetition separators, 0 for an empty one).
func (s *Segment) Repetitions(i int) int {
	e := s.Element(i)
	if len(e) == 0 {
		return 0
	}
	if s.delim.Repetition == 0 {
		return 1
	}
	return bytes.Count(e, []byte{s.delim.Repetition}) + 1
}

// Repetition returns repetition r (1-based) of element i.
func (s *Segment) Repetition(i, r int) []byte {
	e := s.Element(i)
	if s.delim.Repetition == 0 {
		if r == 1 {
			return e
		}
		return nil
	}
	return nth(e, s.delim.Repetition, r)
}

// Component returns component c (1-based) of element i's first repetition.
func (s *Segment) Component(i, c int) []byte {
	return nth(s.Repetition(i, 1), s.delim.Component, c)
}

// Components splits a value (an element or one repetition) on the component
// separator into dst and returns it.
func (s *Segment) Components(dst [][]byte, v []byte) [][]byte {
	for {
		k := bytes.IndexByte(v, s.delim.Component)
		if k < 0 {
			return append(dst, v)
		}
		dst = append(dst, v[:k])
		v = v[k+1:]
	}
}

// nth returns the n-th (1-based) part of v split on sep, nil if absent.
func nth(v []byte, sep byte, n int) []byte {
	if v == nil || n < 1 {
		return nil
	}
	for ; n > 1; n-- {
		k := bytes.IndexByte(v, sep)
		if k < 0 {
			return nil
		}
		v = v[k+1:]
	}
	if k := bytes.IndexByte(v, sep); k >= 0 {
		return v[:k]
	}
	return v
}

// Clone returns a copy of the segment that owns its bytes.
func (s *Segment) Clone() Segment {
	c := *s
	c.data = append([]byte(nil), s.Raw()...)
	c.start = 0
	c.ends = make([]int32, len(s.ends))
	for i, e := range s.ends {
		c.ends[i] = e - int32(s.start)
	}
	return c
}

// cloneHeld copies the segment into dst for a tree. Its bytes and element
// ends stay in the reader's arrays, which hold them (see Reader.hold):
// copying them was a sixth of building a tree. dst is filled field by
// field: a Segment returned by value was copied twice through the stack.
func (s *Segment) cloneHeld(dst *Segment) {
	dst.data = s.data
	dst.start = s.start
	dst.ends = s.ends[:len(s.ends):len(s.ends)]
	dst.delim = s.delim
	dst.plain = s.plain
	dst.Pos = s.Pos
}

// String renders the segment with its own delimiters (for messages).
func (s *Segment) String() string { return string(s.Raw()) }

// Reader reads X12 segments from a stream, one interchange after another.
//
// What it tolerates, each reported once per interchange as a Tolerance: a
// UTF-8 byte order mark before an ISA; whitespace (space, tab, CR, LF) between
// a segment terminator and the next segment, including blank lines. What it
// does not: any other byte before ISA or after IEA, a segment longer than
// MaxSegment, a missing terminator at the end of the stream. An ISA whose
// fields are not padded to their fixed widths is read by its element
// separators (so its control number can still be acknowledged) and reported
// by the envelope checks; nothing else about the delimiters is guessed.
type Reader struct {
	r   io.Reader
	buf []byte
	beg int   // start of unread data in buf
	end int   // end of data in buf
	off int64 // stream offset of buf[0]
	eof bool
	err error // sticky read error

	// MaxSegment bounds the bytes of one segment, and so the memory used.
	MaxSegment int

	delim    Delimiters
	haveISA  bool // delimiters are known: inside an interchange
	seg      Segment
	pos      Position
	posDirty bool // pos changed since it was last copied to seg.Pos
	// findPlain: tell plain segments (Segment.plain) for the validator.
	findPlain bool
	nseg      int

	tolerances []Tolerance
	tolWS      bool // whitespace tolerance already reported in this interchange
	fills      int  // reads so far (the buffer grows for long streams)

	// The structural index of buf from where it was last built (index):
	// idx holds the positions in buf of the element separators and
	// segment terminators of up to indexChunk bytes, in order; tix the
	// entries of idx that are terminators (entry<<1, plus 1 when the
	// segment it ends is not plain). A segment's element ends are then
	// idx[ip : tix[ti]>>1+1] as they are: Next hands them out without a
	// copy and without a look at the segment's bytes. ixNext is where the
	// next indexed segment starts (just past the terminator before).
	// fill, an ISA and an IEA drop the index (invalidate): it holds only
	// inside an interchange, for the buffer and delimiters it was made with.
	idx    []int32
	tix    []int32
	ip, ti int
	ixNext int

	// ends is where the slow path (split) writes a segment's element ends;
	// scratchN is how many the last one used.
	ends     []int32
	scratchN int

	// hold is set while the caller keeps segments that refer to the
	// buffer (the loop tree of the set being read, see Process): their
	// bytes must stay where they are, so fill moves the unread data to
	// another buffer instead of compacting it in place, and the buffers
	// left behind (held) become spares at release.
	hold   bool
	held   [][]byte
	spares [][]byte
	// While holding, the element ends of the segments read stay too: the
	// index arrays they are in (idxHeld, spares at release: idxSpares),
	// and for the slow path's segments, each one's ends are written after
	// those of the one before in ends (see keepEnds; not rewound at
	// release: the segment being read may be in there, and a new hold may
	// start with it, as when an ST ends the set before it).
	idxHeld, idxSpares [][]int32
}

// DefaultMaxSegment is the default bound on one segment's size.
const DefaultMaxSegment = 1 << 20

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 64<<10), MaxSegment: DefaultMaxSegment,
		ends: make([]int32, 0, 64)}
}

// reset makes the reader read from r, keeping its buffers.
func (r *Reader) reset(in io.Reader) {
	r.release()
	*r = Reader{r: in, buf: r.buf, MaxSegment: DefaultMaxSegment, ends: r.ends[:0],
		idx: r.idx, tix: r.tix[:0], held: r.held, spares: r.spares,
		idxHeld: r.idxHeld, idxSpares: r.idxSpares}
}

// Tolerances returns the deviations accepted so far and clears the list.
func (r *Reader) Tolerances() []Tolerance {
	t := r.tolerances
	r.tolerances = nil
	return t
}

// Delimiters are those of the current interchange.
func (r *Reader) Delimiters() Delimiters { return r.delim }

// Offset is the stream offset just past the last segment read.
func (r *Reader) Offset() int64 { return r.off + int64(r.beg) }

// fill reads more data, compacting or growing the buffer as needed. It
// returns false when no more data can be had.
func (r *Reader) fill() bool {
	if r.eof || r.err != nil {
		return false
	}
	r.invalidate()
	if r.beg > 0 && (r.end == len(r.buf) || r.beg > len(r.buf)/2) {
		to := r.buf
		if r.hold {
			to = r.spare()
		}
		n := copy(to, r.buf[r.beg:r.end])
		if r.hold {
			r.held = append(r.held, r.buf)
			r.buf = to
		}
		r.off += int64(r.beg)
		r.end = n
		r.beg = 0
	}
	r.fills++
	switch {
	case r.end == len(r.buf):
		if len(r.buf) >= r.MaxSegment+2 {
			return false
		}
		r.grow(min(2*len(r.buf), r.MaxSegment+2))
	case r.fills == bigInput && len(r.buf) < bigBuffer:
		// A long stream: fewer, larger reads (a 64 KiB read costs a
		// system call per ~60 µs of tokenizing). Small files never pay
		// for the large buffer.
		r.grow(bigBuffer)
	}
	for tries := 0; tries < 100; tries++ {
		n, err := r.r.Read(r.buf[r.end:])
		r.end += n
		if err == io.EOF {
			r.eof = true
			return n > 0
		}
		if err != nil {
			r.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	r.err = io.ErrNoProgress
	return false
}

// spare returns a buffer of len(r.buf) bytes for fill to move to.
func (r *Reader) spare() []byte {
	for len(r.spares) > 0 {
		b := r.spares[len(r.spares)-1]
		r.spares = r.spares[:len(r.spares)-1]
		if len(b) == len(r.buf) {
			return b
		}
	}
	return make([]byte, len(r.buf))
}

// keepEnds leaves the element ends of the slow path's last segment to the
// holder and gives the slow path the rest of the array (a new one when
// little is left).
func (r *Reader) keepEnds() {
	rest := r.ends[:cap(r.ends)][r.scratchN:]
	if cap(rest) < 256 {
		rest = make([]int32, 0, 16<<10)
	}
	r.ends = rest[:0]
	r.scratchN = 0
}

// release ends a hold: the segments read so far are no longer referred to.
func (r *Reader) release() {
	r.hold = false
	for i, b := range r.held {
		// Two spares are enough: a set rarely spans more than one read.
		if len(r.spares) < 2 {
			r.spares = append(r.spares, b)
		}
		r.held[i] = nil
	}
	r.held = r.held[:0]
	for i, x := range r.idxHeld {
		if len(r.idxSpares) < 4 {
			r.idxSpares = append(r.idxSpares, x)
		}
		r.idxHeld[i] = nil
	}
	r.idxHeld = r.idxHeld[:0]
}

// bigInput is the number of reads after which the buffer grows to
// bigBuffer bytes.
const (
	bigInput  = 8
	bigBuffer = 1 << 20
)

// grow replaces the buffer by one of size bytes holding the same data.
func (r *Reader) grow(size int) {
	nb := make([]byte, size)
	copy(nb, r.buf[:r.end])
	r.buf = nb
	r.invalidate()
}

func (r *Reader) errorf(off int64, format string, args ...any) *SyntaxError {
	p := r.pos
	p.Offset = off
	p.Segment = r.nseg + 1
	if p.ST02 != "" {
		p.InSet++
	}
	return &SyntaxError{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// skipSpace skips whitespace between segments; it returns false at end of
// data. One line break after a terminator is normal practice and passes
// quietly; anything more (tabs, spaces, blank lines) is reported once.
func (r *Reader) skipSpace() bool {
	run, prev := 0, byte(0)
	for {
		for r.beg < r.end {
			c := r.buf[r.beg]
			if !isSpace(c) || (r.haveISA && c == r.delim.Element) {
				return true
			}
			run++
			quiet := (run == 1 && (c == '\n' || c == '\r')) || (run == 2 && prev == '\r' && c == '\n')
			prev = c
			if r.haveISA && !r.tolWS && !quiet {
				r.tolWS = true
				r.tolerances = append(r.tolerances, Tolerance{Pos: Position{Offset: r.Offset(), Segment: r.nseg, ISA13: r.pos.ISA13},
					Msg: fmt.Sprintf("whitespace %q between segments ignored (first at offset %d)", c, r.Offset())})
			}
			r.beg++
		}
		if !r.fill() {
			return false
		}
	}
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// Next returns the next segment. It returns io.EOF at the clean end of the
// stream, and a *SyntaxError (or the underlying read error) otherwise. The
// segment is valid until the next call.
func (r *Reader) Next() (*Segment, error) {
	// The common case: the next segment starts right here (no whitespace
	// before it) with an ordinary tag (not ISA), and its terminator is in
	// the structural index (which holds only inside an interchange): its
	// element ends are there already. finish's common part is written out
	// here (a call less per segment).
	if ti := r.ti; uint(ti) < uint(len(r.tix)) && r.beg == r.ixNext {
		if beg := r.beg; uint(beg) < uint(len(r.buf)) && !notOrdinary[r.buf[beg]] {
			c := r.buf[beg]
			t := r.tix[ti]
			k := int(t >> 1)
			// idx[ip:k+1], without the bounds checks (index made ip <= k <
			// len(idx)) and the masking of the pointer for an empty slice.
			n := k + 1 - r.ip
			ends := (*[1 << 28]int32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(r.idx)), r.ip*4))[:n:n]
			e := int(ends[n-1])
			r.ti = ti + 1
			r.ip = k + 1
			r.beg, r.ixNext = e+1, e+1
			s := &r.seg
			s.start = beg
			s.ends = ends
			s.plain = t&1 == 0
			r.nseg++
			// The envelope segments here are GS, GE, ST and SE (an IEA
			// starts with I): a two-letter tag that starts with C, G, S
			// or W (c|0x14 == 'W') goes to finishEnvelope, which also
			// takes any other.
			if r.posDirty || int(ends[0])-beg == 2 && c|0x14 == 'W' {
				return r.finishEnvelope(r.off + int64(beg)), nil
			}
			if r.pos.ST02 != "" {
				r.pos.InSet++
			}
			s.Pos.InSet = r.pos.InSet
			s.Pos.Offset = r.off + int64(beg)
			s.Pos.Segment = r.nseg
			return s, nil
		}
	}
	return r.next()
}

// next is Next's general case: whitespace or an ISA first, the index to be
// built or put in step, or a segment whose terminator is not in it (the
// slow path, readSegment).
func (r *Reader) next() (*Segment, error) {
	if !r.haveISA || r.beg >= r.end || !ordinary(r.buf[r.beg]) {
		if seg, err, done := r.beforeSegment(); done {
			return seg, err
		}
	}
	if (r.ti < len(r.tix) || r.index()) && (r.beg == r.ixNext || r.resync()) {
		t := r.tix[r.ti]
		k := int(t >> 1)
		ends := r.idx[r.ip : k+1]
		beg, e := r.beg, int(ends[len(ends)-1])
		r.ti++
		r.ip = k + 1
		r.beg, r.ixNext = e+1, e+1
		r.seg.plain = t&1 == 0
		return r.finish(beg, ends, r.off+int64(beg)), nil
	}
	return r.readSegment()
}

// invalidate drops the structural index (the buffer's contents or the
// delimiters changed).
func (r *Reader) invalidate() {
	r.tix = r.tix[:0]
	r.ti = 0
}

// indexChunk is how many bytes of the buffer one index covers (at most):
// the index and the bytes stay in the first-level cache until Next reads
// them.
const indexChunk = 16 << 10

// index builds the structural index (see Reader.idx) of the whole 64-byte
// blocks of the buffer from r.beg on, up to indexChunk bytes. It returns
// false when the index holds no terminator.
func (r *Reader) index() bool {
	beg := r.beg
	blk := beg &^ 63
	limit := min(r.end, blk+indexChunk)
	r.tix = r.tix[:0]
	r.ti = 0
	if blk+64 > limit {
		return false
	}
	if r.hold && r.ip > 0 {
		// Segments handed out from this array are held: keep it.
		r.idxHeld = append(r.idxHeld, r.idx)
		r.idx = nil
		if k := len(r.idxSpares); k > 0 {
			r.idx = r.idxSpares[k-1]
			r.idxSpares = r.idxSpares[:k-1]
		}
	}
	r.ip = 0
	// Room for an entry per byte, and 64 more for the writes past the last
	// (small inputs get small arrays).
	size := max(limit-blk, 2048)
	if len(r.idx) < size+64 {
		r.idx = make([]int32, max(size, len(r.idx))+64)
	}
	if cap(r.tix) < size {
		r.tix = make([]int32, 0, max(size, cap(r.tix)))
	}
	r.seg.data = r.buf // Next sets only the rest
	idx, tix := r.idx, r.tix[:cap(r.tix)]
	buf := r.buf[:limit]
	es, ts := r.delim.Element, r.delim.Segment
	comp, rep := r.delim.Component, r.delim.Repetition
	if rep == 0 {
		rep = comp
	}
	keep := ^uint64(0) << uint(beg-blk) // the first block's bytes before beg are not ours
	if useIndexAsm {
		var nt int
		if r.findPlain {
			_, nt = indexPlainAVX2(&buf[blk], (limit-blk)/64, keep, es, ts, comp, rep, int32(blk), &idx[0], &tix[0])
		} else {
			_, nt = indexAVX2(&buf[blk], (limit-blk)/64, keep, es, ts, int32(blk), &idx[0], &tix[0])
		}
		return r.indexed(beg, tix[:nt])
	}
	n, nt := 0, 0
	var carry uint64 // findPlain: odd bytes since the last terminator
	for ; blk+64 <= limit; blk += 64 {
		var seps, terms, odd uint64
		if r.findPlain {
			seps, terms, odd = plainMasks64(&buf[blk], es, ts, comp, rep)
			odd &= keep
		} else {
			seps, terms = sepMasks64(&buf[blk], es, ts)
		}
		seps &= keep
		terms &= keep
		keep = ^uint64(0)
		all := seps | terms
		if all == 0 {
			carry |= odd
			continue
		}
		// Every position, eight at a time without a test each: the
		// writes past the last one are overwritten or never read.
		d := (*[64]int32)(idx[n : n+64])
		cnt := bits.OnesCount64(all)
		b := int32(blk)
		m := all
		d[0] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[1] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[2] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[3] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[4] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[5] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[6] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		d[7] = b + int32(bits.TrailingZeros64(m))
		m &= m - 1
		if cnt > 8 {
			d[8] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[9] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[10] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[11] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[12] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[13] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[14] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			d[15] = b + int32(bits.TrailingZeros64(m))
			m &= m - 1
			for i := 16; m != 0; i++ {
				d[i&63] = b + int32(bits.TrailingZeros64(m))
				m &= m - 1
			}
		}
		// The terminators: their entries are counted off the mask.
		if r.findPlain {
			var done uint64 // this block's bits up to the last terminator
			for t := terms; t != 0; t &= t - 1 {
				bit := t & -t
				low := bit - 1
				k := n + bits.OnesCount64(all&low)
				e := int32(k << 1)
				if carry|odd&low&^done != 0 {
					e |= 1
				}
				tix[nt] = e
				nt++
				carry = 0
				done = low | bit
			}
			carry |= odd &^ done
		} else {
			for t := terms; t != 0; t &= t - 1 {
				low := t&-t - 1
				k := n + bits.OnesCount64(all&low)
				tix[nt] = int32(k<<1 | 1)
				nt++
			}
		}
		n += cnt
	}
	return r.indexed(beg, tix[:nt])
}

// indexed ends index: the index from beg holds the terminators tix. With
// a MaxSegment shorter than an index, it ends before the first segment
// longer than that (Next does not check), which the slow path reports.
func (r *Reader) indexed(beg int, tix []int32) bool {
	if r.MaxSegment < indexChunk {
		start := beg
		for j, t := range tix {
			e := int(r.idx[t>>1])
			if e-start > r.MaxSegment {
				tix = tix[:j]
				break
			}
			start = e + 1
		}
	}
	r.tix = tix
	r.ixNext = beg
	return len(tix) > 0
}

// resync puts the index in step with r.beg when the reader moved past the
// next indexed segment's start by other means (whitespace skipped, a
// segment read by the slow path): it skips the entries before r.beg. It
// returns false when no indexed segment is left.
func (r *Reader) resync() bool {
	if r.beg < r.ixNext {
		r.invalidate()
		return false
	}
	for r.ti < len(r.tix) && int(r.idx[r.ip]) < r.beg {
		if int(r.tix[r.ti]>>1) == r.ip {
			r.ti++
		}
		r.ip++
	}
	r.ixNext = r.beg
	if r.ti == len(r.tix) {
		return false
	}
	// The segment's plain bit counted the bytes skipped.
	if t := r.tix[r.ti]; r.findPlain {
		if e := int(r.idx[t>>1]); r.beg <= e && plainSegment(r.buf[r.beg:e], r.delim) {
			r.tix[r.ti] = t &^ 1
		} else {
			r.tix[r.ti] = t | 1
		}
	}
	return true
}

// notOrdinary[c]: c cannot start a segment that Next's common case reads (an
// ISA, a byte order mark, whitespace or a control byte).
var notOrdinary = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c <= ' ' || c == 'I' || c == 0xEF
	}
	return t
}()

// ordinary reports whether c can start a segment other than ISA after no
// whitespace.
func ordinary(c byte) bool { return c != 'I' && c != 0xEF && !isSpace(c) }

// beforeSegment skips whitespace and reads what is not an ordinary segment:
// an ISA (done, with it), the end of data or bytes that are not X12 (done,
// with the error). Otherwise an ordinary segment starts at r.beg (not done).
func (r *Reader) beforeSegment() (seg *Segment, err error, done bool) {
	if !r.skipSpace() {
		if r.err != nil {
			return nil, r.err, true
		}
		if r.haveISA {
			return nil, r.errorf(r.Offset(), "premature end of data: interchange %s has no IEA", r.pos.ISA13), true
		}
		if r.nseg == 0 {
			return nil, fmt.Errorf("empty input: %w", ErrNotX12), true
		}
		return nil, io.EOF, true
	}
	// A segment that starts with ISA and a non-alphanumeric byte opens an
	// interchange (and sets its delimiters) wherever it appears.
	for r.end-r.beg < 4 && r.fill() {
	}
	b := r.buf[r.beg:r.end]
	if len(b) >= 3 && bytes.Equal(b[:3], bom) {
		r.tolerances = append(r.tolerances, Tolerance{Pos: Position{Offset: r.Offset()}, Msg: "UTF-8 byte order mark before ISA ignored"})
		r.beg += 3
		seg, err = r.Next()
		return seg, err, true
	}
	if len(b) >= 4 && b[0] == 'I' && b[1] == 'S' && b[2] == 'A' && !isAlnum(b[3]) {
		seg, err = r.readISA()
		return seg, err, true
	}
	if !r.haveISA {
		return nil, r.notX12(b), true
	}
	return nil, nil, false
}

func (r *Reader) notX12(b []byte) error {
	show := b[:min(len(b), 40)]
	if r.nseg == 0 {
		return fmt.Errorf("offset %d: %w (input starts with %q)", r.Offset(), ErrNotX12, show)
	}
	return r.errorf(r.Offset(), "data after IEA is not an ISA segment: %q", show)
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// isaFixedSep are the offsets of the 16 element separators of a 106-byte ISA.
var isaFixedSep = [16]int{3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103}

// maxISA bounds how far an unpadded ISA is searched for its 16 separators.
const maxISA = 512

func (r *Reader) readISA() (*Segment, error) {
	for r.end-r.beg < maxISA && r.fill() {
	}
	b := r.buf[r.beg:r.end]
	start := r.Offset()
	es := b[3]
	// The standard layout: fixed widths, ISA16 at 104 and the terminator at 105.
	n := -1
	if len(b) >= 106 {
		n = 104
		for _, p := range isaFixedSep {
			if b[p] != es {
				n = -1
				break
			}
		}
		if n > 0 && bytes.Count(b[:104], []byte{es}) != 16 { // only the fixed ones
			n = -1
		}
	}
	if n < 0 {
		// Unpadded or otherwise odd: find the 16th separator.
		cnt := 0
		for i := 3; i < len(b) && i < maxISA; i++ {
			if b[i] == es {
				cnt++
				if cnt == 16 {
					n = i + 1
					break
				}
			}
		}
		if n < 0 || n+1 >= len(b) {
			return nil, r.errorf(start, "malformed ISA: cannot find ISA16 and the segment terminator (ISA must be 106 characters; element separator %q)", es)
		}
	}
	comp, term := b[n], b[n+1]
	d := Delimiters{Element: es, Component: comp, Segment: term}
	switch {
	case isAlnum(term) || term == es || term == comp:
		return nil, r.errorf(start, "malformed ISA: segment terminator %q after ISA16 is not a valid delimiter", term)
	case isAlnum(es) || es == ' ':
		return nil, r.errorf(start, "malformed ISA: element separator %q is not a valid delimiter", es)
	}
	r.delim = d
	r.invalidate()
	r.haveISA = true
	r.tolWS = false
	r.pos = Position{}
	r.posDirty = true
	seg, err := r.split(r.beg, r.beg+n+1, start)
	if err != nil {
		return nil, err
	}
	// ISA11 is the repetition separator from version 00402 on.
	if ver := seg.Element(12); len(ver) == 5 && string(ver) >= "00402" {
		if rep := seg.Element(11); len(rep) == 1 && !isAlnum(rep[0]) && rep[0] != ' ' && rep[0] != es && rep[0] != comp && rep[0] != term {
			r.delim.Repetition = rep[0]
			seg.delim.Repetition = rep[0]
		}
	}
	r.pos.ISA13 = string(seg.Element(13))
	seg.Pos.ISA13 = r.pos.ISA13
	r.beg += n + 2
	return seg, nil
}

// readSegment reads the segment at r.beg when its terminator is not in the
// structural index (it is in the last bytes of the buffer, which are not a
// whole block, or not in the buffer yet): it finds it with IndexByte,
// reading more and growing the buffer up to MaxSegment when needed.
func (r *Reader) readSegment() (*Segment, error) {
	start := r.Offset()
	scan := r.beg
	for {
		if k := bytes.IndexByte(r.buf[scan:r.end], r.delim.Segment); k >= 0 {
			e := scan + k
			if e-r.beg > r.MaxSegment {
				return nil, r.errorf(start, "segment longer than %d bytes", r.MaxSegment)
			}
			seg, err := r.split(r.beg, e, start)
			r.beg = e + 1
			if err != nil {
				return nil, err
			}
			return seg, nil
		}
		if r.end-r.beg > r.MaxSegment {
			return nil, r.errorf(start, "segment longer than %d bytes without terminator %q", r.MaxSegment, r.delim.Segment)
		}
		done := r.end - r.beg
		if !r.fill() {
			if r.err != nil {
				return nil, r.err
			}
			if r.end-r.beg > r.MaxSegment {
				return nil, r.errorf(start, "segment longer than %d bytes without terminator %q", r.MaxSegment, r.delim.Segment)
			}
			rest := r.buf[r.beg:r.end]
			// A complete IEA cut off only by the end of the file is taken as
			// it is (the end of data ends it), and reported.
			if len(rest) > 4 && string(rest[:3]) == "IEA" && rest[3] == r.delim.Element && !bytes.ContainsAny(rest, "\r\n") {
				r.tolerances = append(r.tolerances, Tolerance{Pos: Position{Offset: start, Segment: r.nseg + 1, ISA13: r.pos.ISA13},
					Msg: fmt.Sprintf("last segment IEA has no terminator %q; the end of data ends it", r.delim.Segment)})
				seg, err := r.split(r.beg, r.end, start)
				r.beg = r.end
				return seg, err
			}
			return nil, r.errorf(start, "premature end of data: last segment %q has no terminator %q", rest[:min(len(rest), 40)], r.delim.Segment)
		}
		scan = r.beg + done
	}
}

// split records the element boundaries of the segment r.buf[beg:e] (the
// slow path) and advances the envelope position.
func (r *Reader) split(beg, e int, off int64) (*Segment, error) {
	if r.hold && r.scratchN > 0 {
		r.keepEnds()
	}
	raw := r.buf[beg:e]
	if cap(r.ends) < len(raw)+1 {
		r.ends = make([]int32, 0, max(64, len(raw)+1))
	}
	ends := r.ends[:cap(r.ends)]
	n := splitElements(ends, raw, r.delim.Element, beg)
	r.scratchN = n + 1
	r.seg.plain = r.findPlain && plainSegment(raw, r.delim)
	return r.finish(beg, ends[:n+1], off), nil
}

// finish completes r.seg, the segment from buf[beg] with the element ends
// ends, and advances the envelope position.
func (r *Reader) finish(beg int, ends []int32, off int64) *Segment {
	s := &r.seg
	s.data = r.buf
	s.start = beg
	s.ends = ends
	r.nseg++
	// Only the envelope segments (GS, GE, ST, SE, IEA; told apart here by
	// length and first letter) and the first segment after the position
	// changed otherwise need more than the counters: r.seg is reused, its
	// control numbers and delimiters are still those of the segment
	// before (copying the whole Position for every segment was a tenth of
	// the tokenizer's time).
	if t, c := int(ends[0])-beg, r.buf[beg]; r.posDirty || t == 2 && (c == 'G' || c == 'S') || t == 3 && c == 'I' {
		return r.finishEnvelope(off)
	}
	if r.pos.ST02 != "" {
		r.pos.InSet++
	}
	s.Pos.InSet = r.pos.InSet
	s.Pos.Offset = off
	s.Pos.Segment = r.nseg
	return s
}

// finishEnvelope is the rest of finish for envelope segments and after a
// change of position or delimiters.
func (r *Reader) finishEnvelope(off int64) *Segment {
	s := &r.seg
	s.delim = r.delim
	// Envelope control numbers for positions: only GS, GE, ST, SE and IEA
	// matter, told apart by their first letters without string compares.
	var kind byte
	if t := s.Tag(); len(t) == 2 {
		switch {
		case t[0] == 'G' && t[1] == 'S':
			kind = 'g'
		case t[0] == 'G' && t[1] == 'E':
			kind = 'G'
		case t[0] == 'S' && t[1] == 'T':
			kind = 's'
		case t[0] == 'S' && t[1] == 'E':
			kind = 'S'
		}
	} else if len(t) == 3 && t[0] == 'I' && t[1] == 'E' && t[2] == 'A' {
		kind = 'I'
		r.haveISA = false
		r.invalidate() // what follows must be an ISA
	}
	switch kind {
	case 'g':
		r.pos.GS06 = string(s.Element(6))
		r.pos.ST02, r.pos.InSet = "", 0
	case 's':
		r.pos.ST02 = string(s.Element(2))
		r.pos.InSet = 0
	}
	if r.pos.ST02 != "" {
		r.pos.InSet++
	}
	if kind != 0 || r.posDirty {
		s.Pos = r.pos
		r.posDirty = false
	} else {
		s.Pos.InSet = r.pos.InSet
	}
	s.Pos.Offset = off
	s.Pos.Segment = r.nseg
	// Leave the set, group or interchange after its trailer.
	switch kind {
	case 'S':
		r.pos.ST02, r.pos.InSet = "", 0
		r.posDirty = true
	case 'G':
		r.pos.GS06, r.pos.ST02, r.pos.InSet = "", "", 0
		r.posDirty = true
	case 'I':
		r.pos = Position{}
		r.posDirty = true
	}
	return s
}

// SWAR constants: a byte 0x01 and 0x7F in every lane of a word.
const (
	swarOnes = 0x0101010101010101
	swar7F   = 0x7F7F7F7F7F7F7F7F
)

// splitElements writes into ends base + the index of every sep in raw, then
// base + len(raw), and returns the number of separators. It compares eight bytes at
// a time (the exact zero-byte test, no borrow between lanes): this loop runs
// over every byte of every file and was half the tokenizer's time byte by
// byte. ends must have room for len(raw)+1 entries.
func splitElements(ends []int32, raw []byte, sep byte, base int) int {
	n := 0
	pat := uint64(sep) * swarOnes
	i := 0
	for ; i+8 <= len(raw); i += 8 {
		x := binary.LittleEndian.Uint64(raw[i:]) ^ pat
		m := ^((x&swar7F + swar7F) | x | swar7F) // high bit set in each lane equal to sep
		for m != 0 {
			ends[n] = int32(base + i + bits.TrailingZeros64(m)>>3)
			n++
			m &= m - 1
		}
	}
	for ; i < len(raw); i++ {
		if raw[i] == sep {
			ends[n] = int32(base + i)
			n++
		}
	}
	ends[n] = int32(base + len(raw))
	return n
}
