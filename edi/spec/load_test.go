package spec

import (
	"strings"
	"testing"
	"testing/fstest"
)

func load(t *testing.T, v string) *Dictionary {
	t.Helper()
	d, err := Load(v)
	if err != nil {
		t.Fatalf("Load(%s): %v", v, err)
	}
	return d
}

func TestLoadBothVersions(t *testing.T) {
	want := map[string][]string{
		"004010": {"810", "850", "855", "856", "997"},
		"005010": {"810", "850", "855", "856", "997", "999"},
	}
	for v, ids := range want {
		d := load(t, v)
		if d.Version != v {
			t.Errorf("Version = %q, want %q", d.Version, v)
		}
		if len(d.Sets) != len(ids) {
			t.Errorf("%s: %d sets, want %d", v, len(d.Sets), len(ids))
		}
		for _, id := range ids {
			s := d.Set(id)
			if s == nil {
				t.Fatalf("%s: set %s missing", v, id)
			}
			if s.Version != v || s.ID != id || s.FunctionalGroup == "" || s.Root == nil || s.Root.ID != "" {
				t.Errorf("%s %s: bad set header %+v", v, id, s)
			}
			ch := s.Root.Children
			if first, last := ch[0], ch[len(ch)-1]; first.Tag() != "ST" || first.Usage != Mandatory ||
				last.Tag() != "SE" || last.Usage != Mandatory {
				t.Errorf("%s %s: structure runs %s..%s", v, id, first.Tag(), last.Tag())
			}
			checkLoops(t, v+" "+id, s.Root)
		}
		if d.Set("999") == nil && v == "005010" || d.Set("999") != nil && v == "004010" {
			t.Errorf("%s: 999 presence wrong", v)
		}
		if d.Set("123") != nil || d.Segment("ZZZ") != nil {
			t.Errorf("unknown lookups must return nil")
		}
	}
}

// checkLoops verifies every loop starts with its mandatory trigger segment.
func checkLoops(t *testing.T, where string, l *Loop) {
	for _, n := range l.Children {
		if n.Loop == nil {
			if n.Segment == nil {
				t.Errorf("%s: node without segment", where)
			}
			continue
		}
		first := n.Loop.Children[0]
		if first.Segment == nil || first.Segment.ID != n.Loop.ID || first.Usage != Mandatory {
			t.Errorf("%s: loop %s has a bad leading segment", where, n.Loop.ID)
		}
		checkLoops(t, where, n.Loop)
	}
}

func TestSetDetails(t *testing.T) {
	d := load(t, "004010")
	if !d.Set("856").HL || d.Set("850").HL {
		t.Errorf("only 856 is hierarchical")
	}
	if g := d.Set("850").FunctionalGroup; g != "PO" {
		t.Errorf("850 group = %s", g)
	}
	var po1 *Node
	for _, n := range d.Set("850").Root.Children {
		if n.Loop != nil && n.Loop.ID == "PO1" {
			po1 = n
		}
	}
	if po1 == nil || po1.Usage != Mandatory || po1.Max != 100000 {
		t.Fatalf("850 PO1 loop = %+v", po1)
	}
	for _, n := range d.Set("850").Root.Children {
		if n.Tag() == "REF" && n.Max != 0 {
			t.Errorf("850 heading REF max = %d, want unbounded", n.Max)
		}
	}
}

func TestVersionResolution(t *testing.T) {
	d4, d5 := load(t, "004010"), load(t, "005010")
	for _, c := range []struct {
		tag    string
		n4, n5 int
	}{{"ST", 2, 3}, {"AK1", 2, 3}, {"AK2", 2, 3}, {"N4", 6, 7}, {"SE", 2, 2}} {
		if got := len(d4.Segment(c.tag).Elements); got != c.n4 {
			t.Errorf("004010 %s has %d elements, want %d", c.tag, got, c.n4)
		}
		if got := len(d5.Segment(c.tag).Elements); got != c.n5 {
			t.Errorf("005010 %s has %d elements, want %d", c.tag, got, c.n5)
		}
	}
	if st3 := d5.Segment("ST").Elements[2]; st3.ID() != "1705" || st3.Since != "005010" || st3.Usage != Optional {
		t.Errorf("005010 ST03 = %+v", st3)
	}
	if n := len(d4.Composites["C030"].Components); n != 2 {
		t.Errorf("004010 C030 has %d components", n)
	}
	if n := len(d5.Composites["C030"].Components); n != 3 {
		t.Errorf("005010 C030 has %d components", n)
	}
	// N4's E0207 refers to N407, which only exists in 005010.
	hasRule := func(s *Segment, text string) bool {
		for _, r := range s.Syntax {
			if r.Text == text {
				return true
			}
		}
		return false
	}
	if hasRule(d4.Segment("N4"), "E0207") || !hasRule(d5.Segment("N4"), "E0207") || !hasRule(d4.Segment("N4"), "C0605") {
		t.Errorf("N4 syntax rules not resolved per version")
	}
	if e4, e5 := d4.Elements["127"], d5.Elements["127"]; e4.Max != 30 || e5.Max != 50 || e4.Type != "AN" {
		t.Errorf("127 lengths: 004010 %d, 005010 %d", e4.Max, e5.Max)
	}
	if a, b := d4.Segment("ISA").Elements[10].ID(), d5.Segment("ISA").Elements[10].ID(); a != "I10" || b != "I65" {
		t.Errorf("ISA11 = %s / %s", a, b)
	}
	for _, d := range []*Dictionary{d4, d5} {
		isa := d.Segment("ISA")
		if len(isa.Elements) != 16 {
			t.Fatalf("ISA has %d elements", len(isa.Elements))
		}
		for i, ref := range isa.Elements {
			if e := ref.Element; e.Min != e.Max {
				t.Errorf("ISA%02d (%s) is not fixed length: %d-%d", i+1, e.ID, e.Min, e.Max)
			}
		}
		if len(d.Segment("TA1").Elements) != 5 || len(d.Segment("GS").Elements) != 8 {
			t.Errorf("TA1/GS element counts wrong")
		}
	}
}

func TestElementTypes(t *testing.T) {
	d := load(t, "004010")
	for _, c := range []struct {
		id       string
		typ      string
		dec      int
		min, max int
	}{
		{"554", "N0", 0, 1, 6}, {"610", "N2", 2, 1, 15}, {"380", "R", 0, 1, 15}, {"373", "DT", 0, 8, 8},
		{"337", "TM", 0, 4, 8}, {"324", "AN", 0, 1, 22}, {"330", "R", 0, 1, 15}, {"212", "R", 0, 1, 17},
		{"628", "AN", 0, 1, 12}, {"735", "ID", 0, 1, 2}, {"382", "R", 0, 1, 10}, {"354", "N0", 0, 1, 6},
		{"96", "N0", 0, 1, 10}, {"329", "AN", 4, 9, 9}, {"28", "N0", 0, 1, 9}, {"I12", "N0", 0, 9, 9},
	} {
		e := d.Elements[c.id]
		if c.id == "329" {
			c.dec, c.min, c.max = 0, 4, 9
		}
		if e == nil || e.Type != c.typ || e.Decimals != c.dec || e.Min != c.min || e.Max != c.max {
			t.Errorf("element %s = %+v", c.id, e)
		}
	}
	if d.Elements["I08"].Type != "DT" || d.Elements["I08"].Max != 6 {
		t.Errorf("I08 must be a 6-digit date")
	}
}

func TestCodeLists(t *testing.T) {
	for _, v := range Versions() {
		d := load(t, v)
		codes := func(seg string, pos int) map[string]string {
			return d.Segment(seg).Elements[pos-1].AllowedCodes()
		}
		check := func(what string, list map[string]string, want ...string) {
			t.Helper()
			if list == nil {
				t.Errorf("%s %s: open list", v, what)
				return
			}
			for _, c := range want {
				if _, ok := list[c]; !ok {
					t.Errorf("%s %s: code %q missing", v, what, c)
				}
			}
		}
		check("BEG01", codes("BEG", 1), "00", "01", "05", "07")
		check("BAK01", codes("BAK", 1), "00", "06")
		check("BSN01", codes("BSN", 1), "00", "05")
		check("BIG08", codes("BIG", 8), "00")
		check("HL03", codes("HL", 3), "S", "O", "P", "T", "I")
		check("HL04", codes("HL", 4), "0", "1")
		check("AK501", codes("AK5", 1), "A", "E", "R", "M", "W", "X")
		check("AK901", codes("AK9", 1), "A", "E", "P", "R")
		check("AK502", codes("AK5", 2), "1", "5", "23")
		check("AK304", codes("AK3", 4), "1", "8")
		check("AK403", codes("AK4", 3), "1", "7", "13")
		check("AK905", codes("AK9", 5), "1", "5", "19")
		check("IK304", codes("IK3", 4), "8", "I4", "I9")
		check("IK403", codes("IK4", 3), "7", "I10", "I12", "I6")
		check("IK502", codes("IK5", 2), "5", "I5", "I6")
		check("DTM01", codes("DTM", 1), "002", "010", "011", "017", "036", "037", "038", "063", "064", "067",
			"068", "069", "074", "077", "079", "097", "106", "118", "150", "151", "196", "197", "405", "814", "847")
		check("REF01", codes("REF", 1), "PO", "IA", "BM", "CN", "DP", "VN", "ZZ", "IV", "MR")
		check("N101", codes("N1", 1), "BT", "BY", "SF", "ST", "SE", "VN", "SU", "RI", "RE", "II", "OB", "MF",
			"PR", "PE", "BS", "SO", "SN", "DA", "CA", "CN", "OT", "FR", "UD", "Z7", "92", "40", "41", "1P", "2L", "9K")
		check("N103", codes("N1", 3), "1", "9", "91", "92", "UL", "ZZ", "2", "24", "34")
		check("PO103", codes("PO1", 3), "EA", "CA", "CS", "BX", "PK", "PL", "DZ", "LB", "KG", "GA", "FT", "CT")
		check("PO106", codes("PO1", 6), "UP", "UK", "UA", "UI", "EN", "VN", "VP", "BP", "SK", "IN", "PI", "CB", "MG", "ND")
		check("ST01", codes("ST", 1), "810", "850", "855", "856", "860", "865", "997", "999", "820", "824", "846", "940", "945")
		check("ACK01", codes("ACK", 1), "IA", "IB", "IC", "ID", "IR", "IQ", "R1", "R8")
		check("TA104", codes("TA1", 4), "A", "E", "R")
		check("TA105", codes("TA1", 5), "000", "001", "031")
		check("ISA14", codes("ISA", 14), "0", "1")
		check("ISA15", codes("ISA", 15), "I", "P", "T")
		if len(codes("TA1", 5)) != 32 {
			t.Errorf("TA105 should list 000-031")
		}
		if n := len(codes("DTM", 1)); n < 900 {
			t.Errorf("%s DTM01 has only %d codes", v, n)
		}
		if d.Elements["668"].Codes["IA"] != "Item Accepted" {
			t.Errorf("668 IA name = %q", d.Elements["668"].Codes["IA"])
		}
	}
	d4 := load(t, "004010")
	check := func(seg string, pos int, want ...string) {
		t.Helper()
		list := d4.Segment(seg).Elements[pos-1].AllowedCodes()
		for _, c := range want {
			if _, ok := list[c]; !ok {
				t.Errorf("004010 %s%02d: code %q missing", seg, pos, c)
			}
		}
	}
	check("BEG", 2, "SA", "NE", "RL", "DS", "KN")
	check("BAK", 2, "AC", "AD", "AE", "AK", "AP", "AT", "NA", "RD", "RF", "RJ", "RO", "ZZ")
	check("TD5", 4, "M", "A", "U", "LT", "R", "ZZ")
	check("TD5", 1, "B", "O")
	check("PO1", 5, "PE", "CP", "CT", "QT")
	check("GS", 1, "PO", "PR", "SH", "IN", "FA", "AG", "RA", "PC", "CA", "IB", "QM", "GF", "OW", "SW", "RN")
}

func TestFamily(t *testing.T) {
	for in, want := range map[string]string{
		"004010": "004010", "004010VICS": "004010", "004060": "004010", "00401": "004010", "00400": "004010",
		"005010": "005010", "005010X231A1": "005010", "00501": "005010",
		"003040": "", "": "", "006020": "",
	} {
		if got := Family(in); got != want {
			t.Errorf("Family(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefault(t *testing.T) {
	first, again := Default("004010"), Default("004010")
	if first != again || Default("005010").Version != "005010" {
		t.Fatal("Default must cache one dictionary per version")
	}
	defer func() {
		if recover() == nil {
			t.Error("Default of an unknown version must panic")
		}
	}()
	Default("003040")
}

func TestLoadUnknownVersion(t *testing.T) {
	if _, err := Load("006020"); err == nil {
		t.Fatal("want error")
	}
}

func TestOverlay(t *testing.T) {
	d := load(t, "004010")
	base := d.Set("850")
	beg := base.Root.Children[1]
	if beg.Tag() != "BEG" {
		t.Fatal("850 second node is not BEG")
	}
	s, err := d.Apply(Overlay{Set: "850", Rules: []OverlayRule{
		{Segment: "BEG", Element: 2, Codes: []string{"SA", "NE"}},
		{Segment: "REF", Element: 2, Usage: Mandatory},
		{Segment: "N1", Element: 2, Max: 35},
		{Segment: "TD5", Usage: Mandatory},
		{Segment: "REF", Element: 4, Component: 1, Codes: []string{"PO"}},
		{Segment: "CUR", Usage: NotUsed},
	}})
	if err != nil {
		t.Fatal(err)
	}
	find := func(l *Loop, tag string) []*Node {
		var out []*Node
		var walk func(*Loop)
		walk = func(l *Loop) {
			for _, n := range l.Children {
				if n.Loop != nil {
					walk(n.Loop)
				} else if n.Segment.ID == tag {
					out = append(out, n)
				}
			}
		}
		walk(l)
		return out
	}
	got := s.Root.Children[1].Segment.Elements[1].AllowedCodes()
	if len(got) != 2 || got["SA"] == "" && got["NE"] == "" {
		if _, ok := got["SA"]; !ok || len(got) != 2 {
			t.Errorf("BEG02 codes = %v", got)
		}
	}
	for _, n := range find(s.Root, "REF") {
		if n.Segment.Elements[1].Usage != Mandatory {
			t.Errorf("REF02 not mandatory in overlay")
		}
		if c := n.Segment.Elements[3].Composite.Components[0].AllowedCodes(); len(c) != 1 {
			t.Errorf("REF04-01 codes = %v", c)
		}
	}
	for _, n := range find(s.Root, "N1") {
		if n.Segment.Elements[1].Element.Max != 35 {
			t.Errorf("N102 max not applied")
		}
	}
	for _, n := range find(s.Root, "TD5") {
		if n.Usage != Mandatory {
			t.Errorf("TD5 usage not applied")
		}
	}
	// The dictionary is untouched.
	if n := len(beg.Segment.Elements[1].AllowedCodes()); n < 50 {
		t.Errorf("dictionary BEG02 list changed: %d codes", n)
	}
	for _, n := range find(base.Root, "REF") {
		if n.Segment.Elements[1].Usage != Conditional {
			t.Errorf("dictionary REF02 usage changed")
		}
		if c := n.Segment.Elements[3].Composite.Components[0].AllowedCodes(); len(c) < 100 {
			t.Errorf("dictionary C040-01 list changed")
		}
	}
	if d.Elements["93"].Max != 60 || d.Segment("N1").Elements[1].Element.Max != 60 {
		t.Errorf("dictionary element 93 changed")
	}
	for _, n := range find(base.Root, "TD5") {
		if n.Usage != Optional {
			t.Errorf("dictionary TD5 usage changed")
		}
	}
	if d.Segment("REF").Elements[1].Usage != Conditional {
		t.Errorf("dictionary REF segment changed")
	}

	// A clone is independent of its source.
	c := base.Clone()
	c.Root.Children[1].Segment.Elements[0].Usage = Optional
	c.Root.Children[1].Segment.Elements[0].Codes = map[string]string{"00": ""}
	c.Root.Children = c.Root.Children[:2]
	if base.Root.Children[1].Segment.Elements[0].Usage != Mandatory ||
		base.Root.Children[1].Segment.Elements[0].Codes != nil || len(base.Root.Children) < 10 {
		t.Errorf("changing a clone changed the dictionary")
	}

	for _, bad := range []Overlay{
		{Set: "123"},
		{Set: "850", Rules: []OverlayRule{{Segment: "ZZZ", Usage: Mandatory}}},
		{Set: "850", Rules: []OverlayRule{{Segment: "BEG", Element: 99, Usage: Mandatory}}},
		{Set: "850", Rules: []OverlayRule{{Segment: "BEG", Element: 1, Codes: []string{"QQ"}}}},
		{Set: "850", Rules: []OverlayRule{{Segment: "REF", Element: 4, Max: 3}}},
		{Set: "850", Rules: []OverlayRule{{Segment: "N1", Element: 2, Min: 70}}},
	} {
		if _, err := d.Apply(bad); err == nil {
			t.Errorf("overlay %+v: want error", bad)
		}
	}
}

func TestDecodeErrorsHaveFileAndLine(t *testing.T) {
	var docs map[string]*located[elementDoc]
	for _, c := range []struct{ doc, want string }{
		{"\"143\":\n  name: X\n  type: ID\n  bogus: 1\n", "bad.yaml:4:"},
		{"\"143\":\n  name: X\n  codes: {00: Original}\n", "bad.yaml:3:"},
		{"\"143\": {name: X}\n\"143\": {name: Y}\n", "bad.yaml:2:"},
		{"\"143\":\n  name: [unclosed\n", "bad.yaml:"},
	} {
		err := decodeYAML("bad.yaml", []byte(c.doc), &docs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("decode %q: err = %v, want it to contain %q", c.doc, err, c.want)
		}
	}
}

func TestLoadFSValidation(t *testing.T) {
	good := fstest.MapFS{
		"elements.yaml": {Data: []byte(`"143": {name: TS ID, type: ID, min: 3, max: 3, codes: ["850"]}
"329": {name: Control, type: AN, min: 4, max: 9}
"96": {name: Count, type: N, min: 1, max: 10}
"1705": {name: Convention, type: AN, min: 1, max: 35}
`)},
		"composites.yaml": {Data: []byte("{}\n")},
		"segments.yaml": {Data: []byte(`ST: {name: Header, elements: ["143 M", "329 M", "1705 O since=005010"]}
SE: {name: Trailer, elements: ["96 M", "329 M"]}
`)},
		"sets/850.yaml": {Data: []byte("id: \"850\"\nname: PO\ngroup: PO\nstructure: [ST M 1, SE M 1]\n")},
	}
	d, err := LoadFS(good, "004010")
	if err != nil {
		t.Fatal(err)
	}
	if d.Elements["96"].Type != "N0" || len(d.Segment("ST").Elements) != 2 {
		t.Errorf("N must read as N0; ST must drop ST03 in 004010")
	}
	for _, c := range []struct{ file, data, want string }{
		{"segments.yaml", "ST: {name: H, elements: [\"143 M\", \"9999 M\"]}\nSE: {name: T, elements: [\"96 M\"]}\n", "segments.yaml:1: segment ST position 2: unknown element"},
		{"segments.yaml", "ST: {name: H, elements: [\"143 M\"], syntax: [P0102]}\nSE: {name: T, elements: [\"96 M\"]}\n", "syntax rule P0102 refers to position 2"},
		{"elements.yaml", "\"143\": {name: X, type: ZZ, min: 3, max: 3}\n\"329\": {name: C, type: AN, min: 9, max: 4}\n\"96\": {name: C, type: N0, min: 1, max: 1}\n\"1705\": {name: C, type: AN, min: 1, max: 1}\n", "invalid type"},
		{"sets/850.yaml", "id: \"850\"\nname: PO\ngroup: PO\nstructure:\n  - ST M 1\n  - loop: N1\n    use: O\n    max: 2\n    body: [SE O 1]\n  - SE M 1\n", "sets/850.yaml:6:"},
		{"sets/850.yaml", "id: \"850\"\nname: PO\ngroup: PO\nstructure: [ST M 1, XX M 1, SE M 1]\n", "unknown segment \"XX\""},
	} {
		fsys := fstest.MapFS{}
		for k, v := range good {
			fsys[k] = v
		}
		fsys[c.file] = &fstest.MapFile{Data: []byte(c.data)}
		_, err := LoadFS(fsys, "004010")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.file, err, c.want)
		}
	}
}
