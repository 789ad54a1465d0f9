package edi

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/edigw/edigw/edi/spec"
	"github.com/edigw/edigw/internal/x12gen"
)

func parseTree(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	jw := NewJSONWriter(&out)
	var opt Options
	jw.Hook(&opt)
	if err := Process(bytes.NewReader(data), opt); err != nil {
		t.Fatal(err)
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Interchanges []struct {
			Groups []struct {
				Sets []struct {
					Tree map[string]any `json:"tree"`
				} `json:"sets"`
			} `json:"groups"`
		} `json:"interchanges"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, out.String())
	}
	var trees []map[string]any
	for _, ic := range doc.Interchanges {
		for _, g := range ic.Groups {
			for _, s := range g.Sets {
				trees = append(trees, s.Tree)
			}
		}
	}
	return trees
}

// path walks keys through the first array element at each step.
func path(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("at %q: not an object: %v", k, v)
		}
		arr, ok := m[k].([]any)
		if !ok || len(arr) == 0 {
			t.Fatalf("no %q in %v", k, m)
		}
		v = arr[0]
	}
	return v
}

func TestTree856Hierarchy(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/856-004010.edi")
	trees := parseTree(t, data)
	if len(trees) != 1 {
		t.Fatalf("%d sets", len(trees))
	}
	tr := trees[0]
	ship := path(t, tr, "HL_S").(map[string]any)
	if ref := path(t, ship, "REF").(map[string]any); ref["REF02"] != "BOL-55501" {
		t.Errorf("shipment REF: %v", ref)
	}
	orders := ship["HL_O"].([]any)
	packs := orders[0].(map[string]any)["HL_P"].([]any)
	if len(orders) != 1 || len(packs) != 2 {
		t.Fatalf("orders %d packs %d", len(orders), len(packs))
	}
	items := packs[0].(map[string]any)["HL_I"].([]any)
	if len(items) != 2 || len(packs[1].(map[string]any)["HL_I"].([]any)) != 1 {
		t.Fatalf("items per pack wrong: %v", packs)
	}
	lin := path(t, items[1], "LIN").(map[string]any)
	if lin["LIN03"] != "012345678912" || lin["pos"] != float64(18) {
		t.Errorf("second item LIN: %v", lin)
	}
	// Loops other than HL carry the _loop suffix; ST and SE are in the root.
	n1 := ship["N1_loop"].([]any)
	if len(n1) != 2 || path(t, n1[1], "N1").(map[string]any)["N101"] != "ST" {
		t.Errorf("N1 loops: %v", n1)
	}
	if _, ok := tr["ST"]; !ok {
		t.Error("ST missing from the root")
	}
	if _, ok := tr["CTT"]; !ok { // a plain segment in the 856 summary (a loop in the 850)
		t.Errorf("CTT missing: %v", tr)
	}
}

// HL nesting follows HL02 to any depth, whatever the level codes, with
// numeric HL01 values and with others (kept apart from the numbers).
func TestTreeHLAnyDepth(t *testing.T) {
	for _, prefix := range []string{"", "A", "0"} {
		var b strings.Builder
		b.WriteString("ST*856*0001~BSN*00*X*20240101*1200~")
		levels := []string{"S", "O", "T", "P", "I", "I", "I"}
		for i, lv := range levels {
			parent := ""
			if i > 0 {
				parent = prefix + string(rune('0'+i))
			}
			b.WriteString("HL*" + prefix + string(rune('1'+i)) + "*" + parent + "*" + lv + "~")
		}
		b.WriteString("SE*10*0001~")
		data := isa401 + "GS*SH*A*B*20240101*1200*1*X*004010~" + b.String() + "GE*1*1~IEA*1*000000001~"
		trees := parseTree(t, []byte(data))
		v := any(trees[0])
		for _, lv := range levels {
			v = path(t, v, "HL_"+lv)
		}
		if hl := path(t, v, "HL").(map[string]any); hl["HL01"] != prefix+"7" || hl["HL02"] != prefix+"6" {
			t.Errorf("HL01 prefix %q: deepest HL: %v", prefix, hl)
		}
	}
}

func TestTreeCompositesAndRepetitions(t *testing.T) {
	data := isa501 + "GS*PO*A*B*20240101*1200*1*X*005010~ST*850*0001~BEG*00*SA*P1**20240101~REF*ZZ*A**BM:1:CN:2~" +
		"PO1*1*1*EA*1**VN*X~CTT*1~SE*6*0001~GE*1*1~IEA*1*000000001~"
	trees := parseTree(t, []byte(data))
	ref := path(t, trees[0], "REF").(map[string]any)
	comp, ok := ref["REF04"].([]any)
	if !ok || len(comp) != 4 || comp[0] != "BM" || comp[3] != "2" {
		t.Errorf("REF04 composite: %#v", ref["REF04"])
	}
	if _, ok := ref["REF03"]; ok {
		t.Error("empty elements must be left out")
	}
	po1 := path(t, trees[0], "PO1_loop", "PO1").(map[string]any)
	if po1["PO107"] != "X" || po1["pos"] != float64(4) {
		t.Errorf("PO1: %v", po1)
	}
}

// Segments walks a tree in document order, every segment of every loop
// once, and stops when the loop body breaks.
func TestNodeSegmentsInDocumentOrder(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/856-004010.edi")
	var tags, want []string
	inSet := false
	r := NewReader(bytes.NewReader(data))
	for {
		seg, err := r.Next()
		if err != nil {
			break
		}
		switch seg.TagString() {
		case "ST":
			inSet = true
		case "GE":
			inSet = false
		}
		if inSet {
			want = append(want, seg.TagString())
		}
	}
	err := Process(bytes.NewReader(data), Options{Tree: true, OnSet: func(ic *Interchange, g *Group, s *Set) {
		for seg := range s.Tree.Segments() {
			tags = append(tags, seg.TagString())
		}
		n := 0
		for range s.Tree.Segments() {
			if n++; n == 3 {
				break
			}
		}
		if n != 3 {
			t.Errorf("break after 3 segments: saw %d", n)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 20 || !slices.Equal(tags, want) {
		t.Fatalf("Segments: %v, want %v", tags, want)
	}
	var none *Node
	for range none.Segments() {
		t.Fatal("a nil node has no segments")
	}
}

// The validator's quick checks accept only values the full check accepts:
// every segment definition of both dictionaries, with values of every type
// (digits, signs, decimal points, exponents, codes, lengths around the
// limits) in every position.
func TestQuickValidAgreesWithCheckValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("0123456789..--EeAZ az/#")
	for _, v := range spec.Versions() {
		d := spec.Default(v)
		for tag, def := range d.Segments {
			checks := def.Checks()
			for iter := 0; iter < 40; iter++ {
				raw := []byte(tag)
				ends := []int32{int32(len(raw))}
				for pos := range def.Elements {
					raw = append(raw, '*')
					var val []byte
					ref := def.Elements[pos]
					switch k := rng.IntN(4); {
					case k == 0 && ref.Element != nil && len(ref.AllowedCodes()) > 0:
						for c := range ref.AllowedCodes() {
							val = []byte(c)
							break
						}
					case k == 1 && ref.Element != nil:
						for range ref.Element.Min + rng.IntN(3) - 1 {
							val = append(val, byte('0'+rng.IntN(10)))
						}
					default:
						for range rng.IntN(10) {
							val = append(val, alphabet[rng.IntN(len(alphabet))])
						}
					}
					raw = append(raw, val...)
					ends = append(ends, int32(len(raw)))
				}
				raw = append(raw, "~~~~~~~~"...)[:len(raw)] // bytes behind, as in the reader's buffer
				for pos := 1; pos < len(ends); {
					next, present := quickValid(checks, ends, raw, pos, 0)
					for p := pos; p < next && p < 64; p++ {
						val := raw[ends[p-1]+1 : ends[p]]
						if present&(1<<p) == 0 {
							if len(val) > 0 {
								t.Fatalf("%s %s%02d %q: accepted but not marked present", v, tag, p, val)
							}
							continue
						}
						if code, msg := checkValue(def.Elements[p-1], val, true); code != "" || def.Elements[p-1].Usage == spec.NotUsed {
							t.Fatalf("%s %s%02d %q: quickValid accepts, checkValue says %s %s", v, tag, p, val, code, msg)
						}
					}
					pos = next + 1
				}
			}
		}
	}
}

// Tree segments keep referring to the reader's buffer while their set is
// read: however the input arrives (a byte at a time, the buffer filling up
// and moving mid-set), every set's tree holds the bytes at its segments'
// offsets, and the JSON is the same as from one large read.
func TestTreeBytesHeldAcrossReads(t *testing.T) {
	var data []byte
	for i, tx := range []string{"850", "856", "850", "856"} {
		cfg := x12gen.Default()
		cfg.TxTypes, cfg.Size = []string{tx}, 300_000
		switch i {
		case 2: // whitespace between segments
			cfg.EOL, cfg.Size = "\r\n", 100_000
		case 3: // other delimiters, newline as terminator
			cfg.Elem, cfg.Seg, cfg.Size = '|', '\n', 100_000
		}
		var buf bytes.Buffer
		if _, err := x12gen.Write(&buf, cfg); err != nil {
			t.Fatal(err)
		}
		data = append(data, buf.Bytes()...)
	}
	trees := func(r io.Reader) []byte {
		var out []byte
		sets := 0
		err := Process(r, Options{Tree: true, OnSet: func(ic *Interchange, g *Group, s *Set) {
			sets++
			for seg := range s.Tree.Segments() {
				if got := data[seg.Pos.Offset : seg.Pos.Offset+int64(len(seg.Raw()))]; !bytes.Equal(seg.Raw(), got) {
					t.Fatalf("set %d: tree segment %q, the input has %q at offset %d", sets, seg.Raw(), got, seg.Pos.Offset)
				}
				parts := bytes.Split(seg.Raw(), []byte{seg.Delimiters().Element})
				if seg.Len() != len(parts)-1 || !bytes.Equal(seg.Tag(), parts[0]) {
					t.Fatalf("set %d: tree segment %q: %d elements, split gives %d", sets, seg.Raw(), seg.Len(), len(parts)-1)
				}
				for e := 1; e <= seg.Len(); e++ {
					if !bytes.Equal(seg.Element(e), parts[e]) {
						t.Fatalf("set %d: tree segment %q: element %d %q, want %q", sets, seg.Raw(), e, seg.Element(e), parts[e])
					}
				}
				if seg.plain != plainSegment(seg.Raw(), seg.delim) {
					t.Fatalf("set %d: tree segment %q: plain %v", sets, seg.Raw(), seg.plain)
				}
			}
			out = s.Tree.AppendJSON(out)
		}})
		if err != nil || sets < 150 {
			t.Fatalf("%v, %d sets", err, sets)
		}
		return out
	}
	want := trees(bytes.NewReader(data))
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		"half":     iotest.HalfReader(bytes.NewReader(data)),
		"odd":      &chunkReader{data: data, sizes: []int{1, 7000, 3, 65536, 120000, 5}},
	} {
		if got := trees(r); !bytes.Equal(got, want) {
			t.Fatalf("%s: the trees differ from one large read", name)
		}
	}
}

// chunkReader returns data in reads of the given sizes, in turn.
type chunkReader struct {
	data  []byte
	sizes []int
	n     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(c.data), c.sizes[c.n%len(c.sizes)])
	c.n++
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// An ST inside a set ends that set (its hold is released) and starts a new
// one with the ST just read: the element ends of the segments read by the
// slow path must not be rewound under it. Pooled readers keep their arrays,
// so the same input runs several times (found by FuzzProcess).
func TestSetStartedBySTInSetKeepsItsEnds(t *testing.T) {
	in := []byte("ISA****************0~GS*IN*******004~ST*~ST*810~~")
	for range 20 {
		Process(bytes.NewReader(in), Options{Tree: true, MaxSegment: 4096, OnSet: func(ic *Interchange, g *Group, s *Set) {
			if s.Tree == nil {
				return
			}
			for seg := range s.Tree.Segments() {
				off := seg.Pos.Offset
				if !bytes.Equal(seg.Raw(), in[off:off+int64(len(seg.Raw()))]) {
					t.Fatalf("tree segment %q is not the input's at offset %d", seg.Raw(), off)
				}
				for e := 1; e <= seg.Len(); e++ {
					seg.Element(e)
				}
			}
			s.Tree.AppendJSON(nil)
		}})
	}
}
