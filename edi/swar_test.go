package edi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The word-at-a-time scans must agree with a byte loop on every input,
// whatever the byte values and wherever the separators fall in a word.
func TestSWARScansMatchByteLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("AB*~:^\x00\x1f\x7f\xff \n~*")
	d := Delimiters{Element: '*', Component: ':', Repetition: '^', Segment: '~'}
	for iter := 0; iter < 20000; iter++ {
		raw := make([]byte, rng.IntN(40))
		for i := range raw {
			raw[i] = alphabet[rng.IntN(len(alphabet))]
		}
		// splitElements against a byte loop
		ends := make([]int32, len(raw)+1)
		base := rng.IntN(100)
		n := splitElements(ends, raw, '*', base)
		var want []int32
		for i, c := range raw {
			if c == '*' {
				want = append(want, int32(base+i))
			}
		}
		want = append(want, int32(base+len(raw)))
		if !slices.Equal(ends[:n+1], want) {
			t.Fatalf("splitElements(%q) = %v, want %v", raw, ends[:n+1], want)
		}
		// plainSegment against a byte loop, with and without a repetition separator
		for _, dd := range []Delimiters{d, {Element: '*', Component: ':', Segment: '~'}, {Element: '*', Component: 'A', Repetition: 'B', Segment: '~'}} {
			plain := true
			for _, c := range raw {
				if c == dd.Component || (dd.Repetition != 0 && c == dd.Repetition) || c < 0x20 || c > 0x7e {
					plain = false
				}
			}
			if got := plainSegment(raw, dd); got != plain {
				t.Fatalf("plainSegment(%q, rep %q) = %v, want %v", raw, dd.Repetition, got, plain)
			}
			// and with bad bytes behind the segment in its buffer
			behind := append(slices.Clone(raw), ":^\x00\xffAB~~"...)[:len(raw)]
			if got := plainSegment(behind, dd); got != plain {
				t.Fatalf("plainSegment(%q + buffer, rep %q) = %v, want %v", raw, dd.Repetition, got, plain)
			}
		}
	}
}

// Every segment carries the control numbers of its interchange, group and
// set, and nothing of the previous ones after a trailer, although the reader
// only copies them when an envelope segment changes them.
func TestSegmentPositionsFollowEnvelopes(t *testing.T) {
	isa := func(n string) string {
		return "ISA*00*          *00*          *ZZ*A              *ZZ*B              *240101*1200*U*00401*" + n + "*0*P*>~\n"
	}
	in := isa("000000001") + "GS*PO*A*B*20240101*1200*7*X*004010~ST*850*0001~BEG*00*SA*1**20240101~SE*3*0001~" +
		"X*stray~ST*850*0002~BEG*00*SA*2**20240101~SE*3*0002~GE*2*7~GS*PO*A*B*20240101*1200*8*X*004010~ST*850*0003~" +
		"SE*2*0003~GE*1*8~IEA*2*000000001~\n" + isa("000000002") + "GS*PO*A*B*20240101*1200*9*X*004010~ST*850*0004~SE*2*0004~GE*1*9~IEA*1*000000002~\n"
	r := NewReader(bytes.NewReader([]byte(in)))
	var isa13, gs06, st02 string
	inSet := 0
	for n := 1; ; n++ {
		seg, err := r.Next()
		if err != nil {
			break
		}
		tag := seg.TagString()
		switch tag {
		case "ISA":
			isa13, gs06, st02, inSet = seg.Value(13), "", "", 0
		case "GS":
			gs06, st02, inSet = seg.Value(6), "", 0
		case "ST":
			st02, inSet = seg.Value(2), 0
		}
		if st02 != "" {
			inSet++
		}
		want := Position{Offset: seg.Pos.Offset, Segment: n, InSet: inSet, ISA13: isa13, GS06: gs06, ST02: st02}
		if seg.Pos != want {
			t.Fatalf("segment %d %s: position %+v, want %+v", n, tag, seg.Pos, want)
		}
		switch tag {
		case "SE":
			st02, inSet = "", 0
		case "GE":
			gs06, st02, inSet = "", "", 0
		case "IEA":
			isa13, gs06, st02, inSet = "", "", "", 0
		}
	}
}

// A syntax-rule violation is found every time it occurs, also after the same
// segment passed the rules with other elements present, and a clean pattern
// after a violating one stays clean.
func TestSyntaxFindingsRepeatPerSegment(t *testing.T) {
	isa := "ISA*00*          *00*          *ZZ*SUPPLIERX      *ZZ*DISTRIB        *240315*1200*U*00401*000000101*0*P*>~\n"
	body := "BEG*00*SA*PO-1**20240315~N1*ST*DC*92*DC07~N1*BT*ACME*92~N1*SF*X*92~N1*RE*Y*92*R1~" +
		"PO1*1*24*EA*12.50*PE*UP*012345678905~CTT*1~"
	in := isa + "GS*PO*SUPPLIERX*DISTRIB*20240315*1200*101*X*004010~ST*850*0001~" + body + "SE*10*0001~" +
		"ST*850*0002~" + body + "SE*10*0002~GE*2*101~IEA*1*000000101~"
	var got []string
	err := Process(bytes.NewReader([]byte(in)), Options{OnSet: func(ic *Interchange, g *Group, s *Set) {
		for _, f := range s.Findings {
			if f.Code == ElConditional {
				got = append(got, fmt.Sprintf("%s %s%02d line %d", s.Control, f.SegmentID, f.Element, f.Pos.InSet))
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0001 N104 line 4", "0001 N104 line 5", "0002 N104 line 4", "0002 N104 line 5"}
	if !slices.Equal(got, want) {
		t.Fatalf("conditional findings %q, want %q", got, want)
	}
}
