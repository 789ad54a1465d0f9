package edi

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addSeeds adds every test file as a fuzz seed (the committed corpus under
// testdata/fuzz adds the inputs the fuzzer found interesting).
func addSeeds(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/defects", "testdata/public"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.edi"))
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzReader: the reader never panics, never loops, and every segment it
// returns is the bytes at its reported offset.
func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Once as it is, once in short reads with the validator's plain
		// segments told.
		fuzzReader(t, data, NewReader(bytes.NewReader(data)))
		rd := NewReader(&shortReader{data: data})
		rd.findPlain = true
		fuzzReader(t, data, rd)
	})
}

// shortReader returns its data in reads of 1 to 97 bytes.
type shortReader struct {
	data []byte
	n    int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	s.n++
	k := min(len(p), len(s.data), 1+s.n*37%97)
	copy(p, s.data[:k])
	s.data = s.data[k:]
	return k, nil
}

func fuzzReader(t *testing.T, data []byte, rd *Reader) {
	rd.MaxSegment = 4096
	var pos Position // what each segment's Pos must say, kept by its tags
	for i := 0; ; i++ {
		s, err := rd.Next()
		if err != nil {
			var se *SyntaxError
			if err != io.EOF && !errors.As(err, &se) && !errors.Is(err, ErrNotX12) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if i > len(data) {
			t.Fatal("more segments than bytes")
		}
		if s.Pos.Offset < 0 || s.Pos.Offset+int64(len(s.Raw())) > int64(len(data)) {
			t.Fatalf("offset %d out of range", s.Pos.Offset)
		}
		if !bytes.Equal(data[s.Pos.Offset:s.Pos.Offset+int64(len(s.Raw()))], s.Raw()) {
			t.Fatalf("segment bytes %q are not at offset %d", s.Raw(), s.Pos.Offset)
		}
		// The elements are the raw bytes split at the element separator.
		parts := bytes.Split(s.Raw(), []byte{s.Delimiters().Element})
		if s.Len() != len(parts)-1 || !bytes.Equal(s.Tag(), parts[0]) {
			t.Fatalf("segment %q: %d elements, tag %q; split gives %d, %q", s.Raw(), s.Len(), s.Tag(), len(parts)-1, parts[0])
		}
		switch string(s.Tag()) {
		case "ISA":
			pos = Position{ISA13: string(s.Element(13))}
		case "GS":
			pos.GS06, pos.ST02, pos.InSet = string(s.Element(6)), "", 0
		case "ST":
			pos.ST02, pos.InSet = string(s.Element(2)), 0
		}
		if pos.ST02 != "" {
			pos.InSet++
		}
		if want := (Position{Offset: s.Pos.Offset, Segment: i + 1, InSet: pos.InSet, ISA13: pos.ISA13, GS06: pos.GS06, ST02: pos.ST02}); s.Pos != want {
			t.Fatalf("segment %d %q: position %+v, want %+v", i+1, s.Raw(), s.Pos, want)
		}
		if rd.findPlain && s.plain != plainSegment(s.Raw(), s.delim) {
			t.Fatalf("segment %d %q: plain %v", i+1, s.Raw(), s.plain)
		}
		if s.Delimiters() != rd.Delimiters() {
			t.Fatalf("segment %d %q: delimiters %q, the interchange's %q", i+1, s.Raw(), s.Delimiters(), rd.Delimiters())
		}
		switch string(s.Tag()) {
		case "SE":
			pos.ST02, pos.InSet = "", 0
		case "GE":
			pos.GS06, pos.ST02, pos.InSet = "", "", 0
		case "IEA":
			pos = Position{}
		}
		for e := 0; e <= s.Len()+1; e++ {
			if e >= 1 && e <= s.Len() && !bytes.Equal(s.Element(e), parts[e]) {
				t.Fatalf("segment %q: element %d %q, want %q", s.Raw(), e, s.Element(e), parts[e])
			}
			s.Component(e, 2)
			s.Repetition(e, 2)
		}
	}
}

// FuzzProcess: envelope checks, validation and the tree builder never panic,
// and the tree renders as JSON.
func FuzzProcess(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf []byte
		Process(bytes.NewReader(data), Options{Tree: true, MaxSegment: 4096, OnSet: func(ic *Interchange, g *Group, s *Set) {
			if s.Tree != nil {
				buf = s.Tree.AppendJSON(buf[:0])
				for seg := range s.Tree.Segments() {
					if off := seg.Pos.Offset; !bytes.Equal(seg.Raw(), data[off:off+int64(len(seg.Raw()))]) {
						t.Fatalf("tree segment %q is not the input's %q at offset %d", seg.Raw(), data[off:off+int64(len(seg.Raw()))], off)
					}
					parts := bytes.Split(seg.Raw(), []byte{seg.Delimiters().Element})
					if seg.Len() != len(parts)-1 {
						t.Fatalf("tree segment %q: %d elements, split gives %d", seg.Raw(), seg.Len(), len(parts)-1)
					}
					for e := 1; e <= seg.Len(); e++ {
						if !bytes.Equal(seg.Element(e), parts[e]) {
							t.Fatalf("tree segment %q: element %d %q, want %q", seg.Raw(), e, seg.Element(e), parts[e])
						}
					}
				}
			}
		}})
	})
}

// FuzzAck: whatever the input, writing its acknowledgement succeeds and the
// ack's own structure reads back sound. The ack may echo values the partner
// got wrong (its ISA13, qualifiers, GS01, ST02), so element errors in echoed
// values are allowed; envelope, count and control-number errors are not.
func FuzzAck(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		ao := AckOptions{Now: fixedNow, Control: func() (int64, error) { return 1, nil }}
		Process(bytes.NewReader(data), Options{MaxSegment: 4096, OnInterchange: func(ic *Interchange) {
			out.Reset()
			ok, err := WriteAck(&out, ic, ao)
			if err != nil {
				t.Fatalf("WriteAck: %v", err)
			}
			if !ok {
				return
			}
			Process(bytes.NewReader(out.Bytes()), Options{OnInterchange: func(ack *Interchange) {
				for _, f := range ack.Findings {
					switch f.Code {
					case TA1ControlMismatch, TA1BadGroupCount, TA1BadControlStructure, TA1PrematureEOF, TA1BadElementSeparator, TA1BadComponentSep:
						t.Fatalf("ack envelope broken: %v\n%q", f, out.String())
					case TA1BadContent:
						if !strings.Contains(f.Msg, "malformed TA1") {
							t.Fatalf("ack envelope broken: %v\n%q", f, out.String())
						}
					}
				}
			}, OnGroup: func(_ *Interchange, g *Group) {
				if len(g.Findings) > 0 {
					t.Fatalf("ack group broken: %v\n%q", g.Findings, out.String())
				}
				for _, s := range g.Sets {
					for _, f := range s.Findings {
						if f.Level == LevelSet || f.Level == LevelSegment && f.Code != SegElementErrors {
							t.Fatalf("ack set broken: %v\n%q", f, out.String())
						}
					}
				}
			}})
		}})
	})
}
