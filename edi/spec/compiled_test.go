package spec

import (
	"fmt"
	"testing"
)

// A compiled code list answers exactly as the map it comes from, for lists
// of every size and for codes longer than a packed word.
func TestCodeSetMatchesMap(t *testing.T) {
	for _, size := range []int{1, 3, 16, 17, 300} {
		for _, long := range []bool{false, true} {
			codes := map[string]string{}
			for i := 0; i < size; i++ {
				codes[fmt.Sprintf("%X", i*7)] = ""
			}
			if long {
				codes["ABCDEFGHIJ"] = ""
			}
			cs := compileCodes(codes)
			for i := 0; i < size*8+10; i++ {
				for _, v := range []string{fmt.Sprintf("%X", i), fmt.Sprintf("%X ", i), "ABCDEFGHIJ", "ABCDEFGH", "", "123456789"} {
					_, want := codes[v]
					if got := cs.has([]byte(v)); got != want {
						t.Fatalf("size %d long %v: has(%q) = %v, want %v", size, long, v, got, want)
					}
					// and read from a buffer with other bytes behind the value
					behind := append([]byte(v), "*ZZ~12345678"...)[:len(v)]
					if got := cs.has(behind); got != want {
						t.Fatalf("size %d long %v: has(%q + buffer) = %v, want %v", size, long, v, got, want)
					}
				}
			}
		}
	}
}

// Overlays restrict code lists and mandatory positions after the
// dictionary was compiled; the set Apply returns answers with the overlay.
func TestApplyRecompiles(t *testing.T) {
	d := Default("004010")
	s, err := d.Apply(Overlay{Set: "850", Rules: []OverlayRule{{Segment: "BEG", Element: 1, Codes: []string{"00"}}, {Segment: "BEG", Element: 4, Usage: Mandatory}}})
	if err != nil {
		t.Fatal(err)
	}
	beg := s.Root.Children[1].Segment
	if beg.ID != "BEG" {
		t.Fatalf("second child is %s", beg.ID)
	}
	if closed, ok := beg.Elements[0].HasCode([]byte("05")); !closed || ok {
		t.Fatalf("BEG01 05 after the overlay: closed %v ok %v", closed, ok)
	}
	if closed, ok := beg.Elements[0].HasCode([]byte("00")); !closed || !ok {
		t.Fatalf("BEG01 00 after the overlay: closed %v ok %v", closed, ok)
	}
	if closed, ok := d.Set("850").Root.Children[1].Segment.Elements[0].HasCode([]byte("05")); !closed || !ok {
		t.Fatalf("the dictionary's BEG01 changed: closed %v ok %v", closed, ok)
	}
	if m, ok := beg.MandatoryMask(); !ok || m&(1<<4) == 0 {
		t.Fatalf("BEG04 not mandatory in the mask %b", m)
	}
}

// Find answers as a scan of Keys does, for every loop of every set, every
// starting child and every key of the loop, and for keys it lacks.
func TestIndexFindMatchesScan(t *testing.T) {
	for _, v := range Versions() {
		for id, s := range Default(v).Sets {
			var walk func(l *Loop)
			walk = func(l *Loop) {
				x := l.Index()
				keys := append([]uint32{0, TagKey([]byte("ZZZ")), TagKey([]byte("A"))}, x.Keys...)
				for from := 0; from <= len(x.Keys); from++ {
					for _, k := range keys {
						want := -1
						for j := from; j < len(x.Keys); j++ {
							if x.Keys[j] == k {
								want = j
								break
							}
						}
						if got := x.Find(k, from); got != want {
							t.Fatalf("%s %s loop %q: Find(%x, %d) = %d, want %d", v, id, l.ID, k, from, got, want)
						}
					}
				}
				for _, c := range l.Children {
					if c.Loop != nil {
						walk(c.Loop)
					}
				}
			}
			walk(s.Root)
		}
	}
}

// Every position's Check carries its ElementRef's type, lengths and code
// list, also after an overlay changed them.
func TestChecksMirrorRefs(t *testing.T) {
	d := Default("004010")
	s, err := d.Apply(Overlay{Set: "850", Rules: []OverlayRule{{Segment: "BEG", Element: 1, Codes: []string{"00"}}, {Segment: "BEG", Element: 3, Min: 2, Max: 5}, {Segment: "BEG", Element: 4, Usage: NotUsed}}})
	if err != nil {
		t.Fatal(err)
	}
	segs := []*Segment{s.Root.Children[1].Segment}
	for _, seg := range d.Segments {
		segs = append(segs, seg)
	}
	for _, seg := range segs {
		checks := seg.Checks()
		if len(checks) != len(seg.Elements) {
			t.Fatalf("%s: %d checks for %d positions", seg.ID, len(checks), len(seg.Elements))
		}
		for i, r := range seg.Elements {
			c := &checks[i]
			if r.Element == nil || r.Usage == NotUsed {
				if c.Kind != KindUnknown {
					t.Fatalf("%s%02d: kind %d for a composite or unused position", seg.ID, i+1, c.Kind)
				}
				continue
			}
			if c.Kind != r.Element.TypeKind() || c.Min != r.Element.Min || c.Max != r.Element.Max {
				t.Fatalf("%s%02d: check %+v, element %+v", seg.ID, i+1, *c, *r.Element)
			}
			for code := range r.Element.Codes {
				closed, ok := c.HasCode([]byte(code))
				wc, wok := r.HasCode([]byte(code))
				if closed != wc || ok != wok || (c.Coded([]byte(code)) && !ok) {
					t.Fatalf("%s%02d code %q: check %v %v (coded %v), ref %v %v", seg.ID, i+1, code, closed, ok, c.Coded([]byte(code)), wc, wok)
				}
			}
		}
	}
	beg := s.Root.Children[1].Segment.Checks()
	if beg[2].Min != 2 || beg[2].Max != 5 || beg[3].Kind != KindUnknown {
		t.Fatalf("BEG checks after the overlay: %+v", beg)
	}
	if closed, ok := beg[0].HasCode([]byte("05")); !closed || ok {
		t.Fatalf("BEG01 05 after the overlay: closed %v ok %v", closed, ok)
	}
}
