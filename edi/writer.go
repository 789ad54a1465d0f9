package edi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Writer writes X12 segments with chosen delimiters. Segments are built with
// Seg/El/Comp/End; envelopes with BeginInterchange/BeginGroup/BeginSet and
// their End counterparts, which fill in control numbers and counts.
// Errors are sticky and returned by End and Flush.
type Writer struct {
	w     *bufio.Writer
	d     Delimiters
	eol   string // written after each terminator: "", "\n" or "\r\n"
	err   error
	open  bool // inside a segment
	empty int  // pending empty elements (trailing empties are not written)

	// envelope state
	isa13, gs06, st02  string
	groups, sets, segs int
}

// NewWriter returns a Writer with the given delimiters; eol ("", "\n" or
// "\r\n") is written after every segment terminator.
func NewWriter(w io.Writer, d Delimiters, eol string) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 32<<10), d: d, eol: eol}
}

// Delimiters returns the writer's delimiters.
func (w *Writer) Delimiters() Delimiters { return w.d }

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Seg starts a segment.
func (w *Writer) Seg(tag string) *Writer {
	if w.open {
		w.fail(fmt.Errorf("segment %s started before the previous one ended", tag))
	}
	w.open, w.empty = true, 0
	w.checkValue(tag, tag, false)
	w.w.WriteString(tag)
	if w.st02 != "" || tag == "ST" {
		w.segs++
	}
	return w
}

// El appends a simple element. Trailing empty elements are dropped.
func (w *Writer) El(v string) *Writer {
	if v == "" {
		w.empty++
		return w
	}
	w.sep()
	w.checkValue("element", v, false)
	w.w.WriteString(v)
	return w
}

// Els appends several simple elements.
func (w *Writer) Els(vs ...string) *Writer {
	for _, v := range vs {
		w.El(v)
	}
	return w
}

// Comp appends a composite element made of components; trailing empty
// components are dropped.
func (w *Writer) Comp(parts ...string) *Writer {
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if len(parts) == 0 {
		w.empty++
		return w
	}
	w.sep()
	for i, p := range parts {
		if i > 0 {
			w.w.WriteByte(w.d.Component)
		}
		w.checkValue("component", p, false)
		w.w.WriteString(p)
	}
	return w
}

func (w *Writer) sep() {
	for ; w.empty >= 0; w.empty-- {
		w.w.WriteByte(w.d.Element)
	}
	w.empty = 0
}

// End terminates the segment.
func (w *Writer) End() error {
	if !w.open {
		w.fail(errors.New("End without Seg"))
	}
	w.open = false
	w.w.WriteByte(w.d.Segment)
	w.w.WriteString(w.eol)
	return w.err
}

// checkValue rejects values that contain a delimiter: X12 has no escaping,
// so such a value would silently change the structure of the output.
func (w *Writer) checkValue(what, v string, _ bool) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == w.d.Element || c == w.d.Segment || c == w.d.Component || (w.d.Repetition != 0 && c == w.d.Repetition) {
			w.fail(fmt.Errorf("%s %q contains the delimiter %q", what, v, c))
			return
		}
	}
}

// Safe returns v with every delimiter and non-printable byte replaced by
// '?' (or, when '?' is itself a delimiter, the first of "_#XZ" that is not).
// Acknowledgements echo values the partner sent; when those collide with
// the ack's delimiters the ack must still be writable (and say so).
func (w *Writer) Safe(v string) string {
	bad := func(c byte) bool {
		return c < 0x20 || c > 0x7e || c == w.d.Element || c == w.d.Segment || c == w.d.Component || (w.d.Repetition != 0 && c == w.d.Repetition)
	}
	for i := 0; i < len(v); i++ {
		if !bad(v[i]) {
			continue
		}
		sub := byte('?')
		for _, c := range []byte("?_#XZ") { // four delimiters cannot rule out all five
			if !bad(c) {
				sub = c
				break
			}
		}
		b := []byte(v)
		for j := i; j < len(b); j++ {
			if bad(b[j]) {
				b[j] = sub
			}
		}
		return string(b)
	}
	return v
}

// WriteSegment writes a segment read elsewhere. With the same delimiters the
// bytes are copied unchanged; otherwise delimiters are translated (and a
// value containing one of the new delimiters is an error).
func (w *Writer) WriteSegment(s *Segment) error {
	if w.open {
		w.fail(errors.New("WriteSegment inside an open segment"))
	}
	if s.delim == w.d {
		w.w.Write(s.Raw())
	} else {
		from, to := s.delim, w.d
		for _, c := range s.Raw() {
			switch {
			case c == from.Element:
				c = to.Element
			case c == from.Component:
				c = to.Component
			case from.Repetition != 0 && c == from.Repetition:
				c = to.Repetition
			case c == to.Element || c == to.Component || c == to.Segment || (to.Repetition != 0 && c == to.Repetition):
				w.fail(fmt.Errorf("segment %s: data byte %q is a delimiter of the output", s.Tag(), c))
			}
			w.w.WriteByte(c)
		}
	}
	tag := s.Tag()
	if w.st02 != "" || bytes.Equal(tag, []byte("ST")) {
		w.segs++
	}
	w.w.WriteByte(w.d.Segment)
	w.w.WriteString(w.eol)
	return w.err
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		w.fail(err)
	}
	return w.err
}

// ISAHeader holds the variable fields of an ISA segment; the writer pads them
// to their fixed widths.
type ISAHeader struct {
	AuthQualifier, AuthInfo         string // ISA01/02, default "00" and blanks
	SecurityQualifier, SecurityInfo string // ISA03/04
	SenderQualifier, SenderID       string // ISA05/06
	ReceiverQualifier, ReceiverID   string // ISA07/08
	Date, Time                      string // ISA09 YYMMDD, ISA10 HHMM
	Version                         string // ISA12, e.g. 00401 or 00501
	Control                         int64  // ISA13
	AckRequested                    bool   // ISA14
	Usage                           string // ISA15: P, T or I
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

// BeginInterchange writes an ISA segment. ISA11 is the repetition separator
// from version 00402 on and "U" before.
func (w *Writer) BeginInterchange(h ISAHeader) error {
	if h.Control < 0 || h.Control > 999999999 {
		return fmt.Errorf("ISA13 %d out of range", h.Control)
	}
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	isa11 := "U"
	if h.Version >= "00402" {
		if w.d.Repetition == 0 {
			return fmt.Errorf("version %s needs a repetition separator", h.Version)
		}
		isa11 = string([]byte{w.d.Repetition}) // one byte, not a rune: a separator may be above 0x7F
	}
	ack := "0"
	if h.AckRequested {
		ack = "1"
	}
	fields := []struct {
		v string
		n int
	}{
		{def(h.AuthQualifier, "00"), 2}, {h.AuthInfo, 10}, {def(h.SecurityQualifier, "00"), 2}, {h.SecurityInfo, 10},
		{h.SenderQualifier, 2}, {h.SenderID, 15}, {h.ReceiverQualifier, 2}, {h.ReceiverID, 15},
		{h.Date, 6}, {h.Time, 4}, {isa11, 1}, {h.Version, 5}, {fmt.Sprintf("%09d", h.Control), 9},
		{ack, 1}, {def(h.Usage, "P"), 1},
	}
	w.Seg("ISA")
	for i, f := range fields {
		v := pad(f.v, f.n)
		if len(v) != f.n {
			return fmt.Errorf("ISA%02d %q longer than %d", i+1, f.v, f.n)
		}
		w.w.WriteByte(w.d.Element)
		if i != 10 { // ISA11 may legitimately be the repetition separator
			w.checkValue(fmt.Sprintf("ISA%02d", i+1), v, false)
		}
		w.w.WriteString(v)
	}
	w.w.WriteByte(w.d.Element)
	w.w.WriteByte(w.d.Component)
	w.isa13 = fmt.Sprintf("%09d", h.Control)
	w.groups = 0
	return w.End()
}

// GSHeader holds the fields of a GS segment.
type GSHeader struct {
	FunctionalID     string // GS01
	Sender, Receiver string // GS02/03
	Date, Time       string // GS04 CCYYMMDD, GS05 HHMM
	Control          int64  // GS06
	Agency           string // GS07, default X
	Version          string // GS08, e.g. 004010 or 005010X231A1
}

// BeginGroup writes a GS segment.
func (w *Writer) BeginGroup(h GSHeader) error {
	ag := h.Agency
	if ag == "" {
		ag = "X"
	}
	w.gs06 = strconv.FormatInt(h.Control, 10)
	w.sets = 0
	w.groups++
	w.Seg("GS").Els(h.FunctionalID, h.Sender, h.Receiver, h.Date, h.Time, w.gs06, ag, h.Version)
	return w.End()
}

// BeginSet writes ST (with ST03 when implRef is not empty) and starts
// counting segments for SE01.
func (w *Writer) BeginSet(id, control, implRef string) error {
	w.st02 = control
	w.segs = 0
	w.sets++
	w.Seg("ST").Els(id, control, implRef)
	return w.End()
}

// EndSet writes SE with the segment count and control number.
func (w *Writer) EndSet() error {
	if w.st02 == "" {
		return errors.New("EndSet without BeginSet")
	}
	w.Seg("SE").Els(strconv.Itoa(w.segs), w.st02)
	err := w.End()
	w.st02 = ""
	return err
}

// EndGroup writes GE.
func (w *Writer) EndGroup() error {
	w.Seg("GE").Els(strconv.Itoa(w.sets), w.gs06)
	return w.End()
}

// EndInterchange writes IEA.
func (w *Writer) EndInterchange() error {
	w.Seg("IEA").Els(strconv.Itoa(w.groups), w.isa13)
	return w.End()
}
