package edi

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

const isa401 = "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*U*00401*000000001*0*P*>~"
const isa501 = "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*^*00501*000000001*0*P*:~"

func readAll(t *testing.T, r io.Reader) ([]Segment, *Reader, error) {
	t.Helper()
	rd := NewReader(r)
	var segs []Segment
	for {
		s, err := rd.Next()
		if err == io.EOF {
			return segs, rd, nil
		}
		if err != nil {
			return segs, rd, err
		}
		segs = append(segs, s.Clone())
	}
}

func TestReaderDelimitersFromEachISA(t *testing.T) {
	in := isa401 + "GS*PO*A*B*20240101*1200*1*X*004010~IEA*1*000000001~" +
		strings.NewReplacer("*", "|", "~", "\n", "^", "!", ":", "\\").Replace(isa501) +
		"GS|PO|A|B|20240101|1200|2|X|005010\nREF|ZZ|A!B|C\\D\nIEA|1|000000001\n"
	segs, _, err := readAll(t, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 7 {
		t.Fatalf("got %d segments, want 7", len(segs))
	}
	d := segs[0].Delimiters()
	if d != (Delimiters{Element: '*', Component: '>', Segment: '~'}) {
		t.Errorf("004010 delimiters = %+v (ISA11 U is not a repetition separator)", d)
	}
	ref := segs[5]
	if got := ref.Delimiters(); got != (Delimiters{Element: '|', Component: '\\', Repetition: '!', Segment: '\n'}) {
		t.Errorf("005010 delimiters = %+v", got)
	}
	if ref.TagString() != "REF" || ref.Len() != 3 || ref.Repetitions(2) != 2 || string(ref.Repetition(2, 2)) != "B" {
		t.Errorf("REF split wrong: %q len %d reps %d", ref.Raw(), ref.Len(), ref.Repetitions(2))
	}
	if string(ref.Component(3, 2)) != "D" || string(ref.Component(3, 1)) != "C" || ref.Component(3, 3) != nil {
		t.Errorf("components of REF03 wrong")
	}
}

func TestReaderBinarySeparatorsAndWhitespace(t *testing.T) {
	isa := strings.NewReplacer("*", "\x1d", "~", "\x1c", ">", "\x1f").Replace(isa401)
	in := "\xEF\xBB\xBF" + isa + "\r\nGS\x1dPO\x1dA\x1dB\x1d20240101\x1d1200\x1d1\x1dX\x1d004010\x1c\r\n\r\n\tIEA\x1d1\x1d000000001\x1c"
	segs, rd, err := readAll(t, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 3 || segs[1].Value(8) != "004010" || segs[2].TagString() != "IEA" {
		t.Fatalf("segments: %d %v", len(segs), segs)
	}
	tol := rd.Tolerances()
	if len(tol) != 2 || !strings.Contains(tol[0].Msg, "byte order mark") || !strings.Contains(tol[1].Msg, "whitespace") {
		t.Errorf("tolerances not reported: %+v", tol)
	}
}

func TestReaderCRLFAfterTerminatorIsQuiet(t *testing.T) {
	in := isa401 + "\r\nGS*PO*A*B*20240101*1200*1*X*004010~\r\nIEA*1*000000001~\r\n"
	_, rd, err := readAll(t, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if tol := rd.Tolerances(); len(tol) != 0 {
		t.Errorf("CRLF after terminators is normal practice, got tolerances %+v", tol)
	}
}

func TestReaderUnpaddedISA(t *testing.T) {
	in := "ISA*00* *00* *ZZ*SHORT*ZZ*RCV*240101*1200*U*00401*000000009*0*T*>~GS*PO*A*B*20240101*1200*1*X*004010~IEA*1*000000009~"
	segs, _, err := readAll(t, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if segs[0].Value(13) != "000000009" || segs[0].Delimiters().Component != '>' || len(segs) != 3 {
		t.Fatalf("unpadded ISA not read by separators: %q", segs[0].Raw())
	}
}

func TestReaderErrorsCarryPositions(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
		notX12   bool
	}{
		{"empty", "", []string{"empty input"}, true},
		{"csv", "sku,qty\nA1,4\n", []string{"not X12", `"sku,qty`}, true},
		{"garbage after IEA", isa401 + "IEA*0*000000001~junk", []string{"offset 122", "not an ISA"}, false},
		{"no terminator at end", isa401 + "GS*PO*A*B*20240101*1200*7*X*004010~ST*850*0001~BEG*00", []string{"premature end", "offset 153", "set position 2", "segment 4", "ISA13 000000001", "GS06 7", "ST02 0001", `"BEG*00"`}, false},
		{"no IEA", isa401 + "GS*PO*A*B*20240101*1200*1*X*004010~", []string{"premature end", "has no IEA"}, false},
		{"terminator alnum", strings.Replace(isa401, ">~", ">A", 1), []string{"malformed ISA", "segment terminator 'A'"}, false},
		{"short ISA", "ISA*00*", []string{"malformed ISA"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readAll(t, strings.NewReader(c.in))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if got := errors.Is(err, ErrNotX12); got != c.notX12 {
				t.Errorf("errors.Is(ErrNotX12) = %v", got)
			}
		})
	}
}

func TestReaderFinalIEAWithoutTerminator(t *testing.T) {
	segs, rd, err := readAll(t, strings.NewReader(isa401+"GS*PO*A*B*20240101*1200*1*X*004010~GE*0*1~IEA*1*000000001"))
	if err != nil || len(segs) != 4 || segs[3].Value(2) != "000000001" {
		t.Fatalf("err %v, %d segments", err, len(segs))
	}
	if tol := rd.Tolerances(); len(tol) != 1 || !strings.Contains(tol[0].Msg, "IEA has no terminator") {
		t.Errorf("not reported: %+v", tol)
	}
}

func TestReaderMaxSegment(t *testing.T) {
	in := isa401 + "GS*" + strings.Repeat("A", 5000) + "~"
	rd := NewReader(strings.NewReader(in))
	rd.MaxSegment = 1000
	rd.Next()
	_, err := rd.Next()
	if err == nil || !strings.Contains(err.Error(), "longer than 1000") {
		t.Fatalf("err = %v", err)
	}
	// In the middle of an index: exactly MaxSegment bytes pass, one more
	// does not.
	in = isa401 + "GS*PO*A*B*20240101*1200*1*X*004010~" + strings.Repeat("N1*X~", 20) +
		"AA*" + strings.Repeat("B", 997) + "~" + strings.Repeat("N1*X~", 20) + "CC*" + strings.Repeat("B", 998) + "~" + strings.Repeat("N1*X~", 40)
	rd = NewReader(strings.NewReader(in))
	rd.MaxSegment = 1000
	n := 0
	for {
		seg, err := rd.Next()
		if err != nil {
			if n != 43 || !strings.Contains(err.Error(), "longer than 1000") {
				t.Fatalf("after %d segments: err = %v", n, err)
			}
			break
		}
		if n++; seg.TagString() == "AA" && len(seg.Raw()) != 1000 {
			t.Fatalf("AA: %d bytes", len(seg.Raw()))
		}
	}
}

// One byte at a time exercises every buffer boundary.
func TestReaderOneByteReads(t *testing.T) {
	for _, name := range []string{"850-004010.edi", "856-005010.edi"} {
		data, err := os.ReadFile(filepath.Join("testdata/valid", name))
		if err != nil {
			t.Fatal(err)
		}
		a, _, err1 := readAll(t, bytes.NewReader(data))
		b, _, err2 := readAll(t, iotest.OneByteReader(bytes.NewReader(data)))
		if err1 != nil || err2 != nil || len(a) != len(b) {
			t.Fatalf("%s: %v %v %d %d", name, err1, err2, len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i].Raw(), b[i].Raw()) || a[i].Pos != b[i].Pos {
				t.Errorf("%s: segment %d differs: %q %+v vs %q %+v", name, i, a[i].Raw(), a[i].Pos, b[i].Raw(), b[i].Pos)
			}
		}
	}
}

func TestRoundTripSameBytes(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.edi")
	if len(files) < 10 {
		t.Fatalf("only %d valid files", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		segs, _, err := readAll(t, bytes.NewReader(data))
		if err != nil {
			t.Fatal(f, err)
		}
		var out bytes.Buffer
		w := NewWriter(&out, segs[0].Delimiters(), "\n")
		for i := range segs {
			if err := w.WriteSegment(&segs[i]); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		if !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s: round trip differs:\n%s", f, out.Bytes())
		}
	}
}

func TestWriterTranslatesDelimiters(t *testing.T) {
	segs, _, _ := readAll(t, strings.NewReader(isa501+"GS*PO*A*B*20240101*1200*1*X*005010~REF*ZZ*A^B*C:D~IEA*1*000000001~"))
	var out bytes.Buffer
	w := NewWriter(&out, Delimiters{Element: '|', Component: '>', Repetition: '!', Segment: '\n'}, "")
	w.WriteSegment(&segs[2])
	w.Flush()
	if out.String() != "REF|ZZ|A!B|C>D\n" {
		t.Errorf("got %q", out.String())
	}
	out.Reset()
	w = NewWriter(&out, Delimiters{Element: '*', Component: 'B', Repetition: '^', Segment: '~'}, "")
	if err := w.WriteSegment(&segs[2]); err == nil {
		t.Error("a data byte equal to an output delimiter must be an error")
	}
}

func TestWriterEnvelopeCounts(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, DefaultDelimiters, "\n")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.BeginInterchange(ISAHeader{SenderQualifier: "ZZ", SenderID: "ME", ReceiverQualifier: "01", ReceiverID: "123456789",
		Date: "240101", Time: "0930", Version: "00501", Control: 42, AckRequested: true, Usage: "T"}))
	must(w.BeginGroup(GSHeader{FunctionalID: "PO", Sender: "ME", Receiver: "YOU", Date: "20240101", Time: "0930", Control: 7, Version: "005010"}))
	must(w.BeginSet("850", "0001", ""))
	must(w.Seg("BEG").Els("00", "SA", "PO1", "", "20240101").End())
	must(w.Seg("REF").El("ZZ").El("").El("").Comp("A", "B", "").End())
	must(w.Seg("N1").El("ST").El("").El("").End()) // trailing empties dropped
	must(w.EndSet())
	must(w.EndGroup())
	must(w.EndInterchange())
	must(w.Flush())
	want := `ISA*00*          *00*          *ZZ*ME             *01*123456789      *240101*0930*^*00501*000000042*1*T*:~
GS*PO*ME*YOU*20240101*0930*7*X*005010~
ST*850*0001~
BEG*00*SA*PO1**20240101~
REF*ZZ***A:B~
N1*ST~
SE*5*0001~
GE*1*7~
IEA*1*000000042~
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if n := strings.Index(out.String(), "\n"); n != 106 {
		t.Errorf("ISA is %d characters", n)
	}
	if err := NewWriter(io.Discard, DefaultDelimiters, "").Seg("REF").El("A*B").End(); err == nil {
		t.Error("a value containing the element separator must be refused")
	}
}
