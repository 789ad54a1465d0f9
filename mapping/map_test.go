package mapping

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edigw/edigw/edi"
)

// The golden tests of the mappings in testdata (856 in, CSV in, 850 out).
func TestGoldenMappings(t *testing.T) {
	for _, f := range []string{"testdata/asn-856.yaml", "testdata/inventory.yaml", "testdata/po-850-out.yaml", "testdata/po-850-in.yaml"} {
		m, err := LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res := m.RunTests(TestOptions{})
		if len(res) == 0 {
			t.Errorf("%s: no tests", f)
		}
		for _, r := range res {
			if !r.Pass {
				t.Errorf("%s %s: %v\n%s", f, r.Test.Input, r.Err, r.Diff)
			}
		}
	}
}

// tree parses one X12 set and returns its loop tree (kept alive by the
// callback's copy of the data: Process reuses its arenas per set, so the
// test maps inside the callback).
func withTree(t *testing.T, data string, fn func(n *edi.Node)) {
	t.Helper()
	called := false
	err := edi.Process(strings.NewReader(data), edi.Options{Tree: true, OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
		called = true
		if s.Tree == nil {
			t.Fatalf("no tree: %v", s.Findings)
		}
		fn(s.Tree)
	}})
	if err != nil || !called {
		t.Fatalf("process: %v (called %v)", err, called)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSelectors(t *testing.T) {
	data := readFile(t, "testdata/asn-basic.edi")
	m, err := LoadFile("testdata/asn-856.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sel  string
		want []string
	}{
		{"BSN.BSN02", []string{"ASN-7781"}},
		{"HL_S.REF[REF01='BM'].REF02", []string{"BOL-55501"}},
		{"HL_S.REF[REF01!='BM'].REF02", nil},
		{"HL_S.REF[REF01 in ['CN','BM']].REF02", []string{"BOL-55501"}},
		{"HL_S.N1_loop[N1.N101='ST'].N1.N104", []string{"DC07"}},
		{"HL_S.N1_loop[N1.N101='SF' or N1.N101='ST'].N1.N104", []string{"SUPX", "DC07"}},
		{"HL_S.N1_loop[N1.N101='SF' and N1.N103='92'].N1.N102", []string{"SUPPLIER X"}},
		{"HL_S.N1_loop[-1].N1.N101", []string{"ST"}},
		{"HL_S.N1_loop[0].N1.N101", []string{"SF"}},
		{"HL_S.N1_loop[5].N1.N101", nil},
		{"HL_S.HL_O.HL_P.HL_I.LIN.LIN03", []string{"012345678905", "012345678912", "012345678905"}},
		{"HL_S.HL_O.**.HL_I.SN1.SN102", []string{"12", "4", "12"}},
		{"**.HL.HL01", []string{"1", "2", "3", "4", "5", "6", "7"}},
		{"HL_S.HL_O.HL_P[MAN.MAN02='00012345678901234574'].HL_I.SN1.SN102", []string{"12"}},
		{"HL_S.HL_O.HL_P[1].HL_I[0].LIN.LIN05", []string{"ABC-100"}},
		{"HL_S.TD1[TD106='G'].TD107", []string{"42.5"}},
		{"HL_S.REF[REF03].REF02", nil}, // exists: REF03 is empty
		{"HL_S.REF[REF02].REF01", []string{"BM"}},
		{"HL_S.TD5", []string{"TD5**2*UPSN*U*UPS GROUND"}},
		{"HL_S.HL_O.HL_P.HL_I.LIN", []string{"LIN*1*UP*012345678905*VN*ABC-100", "LIN*2*UP*012345678912*VN*ABC-200", "LIN*1*UP*012345678905*VN*ABC-100"}},
		{"**.HL_I[LIN.LIN03='012345678912'].SN1.SN102", []string{"4"}},
		{"$$.BSN.BSN03", []string{"20240320"}},
	}
	withTree(t, data, func(n *edi.Node) {
		root := item{node: n}
		for _, c := range cases {
			s, err := parseSelector(c.sel)
			if err != nil {
				t.Errorf("%s: %v", c.sel, err)
				continue
			}
			if err := s.check(m.set, sctx{set: m.set, loops: allLoops(m.set.Root, nil)[:1]}); err != nil {
				t.Errorf("%s: %v", c.sel, err)
				continue
			}
			var got []string
			e := &evaluator{doc: &tree{}}
			for _, it := range s.eval(e, root, root, nil) {
				got = append(got, it.text())
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("%s = %q, want %q", c.sel, got, c.want)
			}
			// first, which takes shortcuts for most selectors, finds what
			// eval lists first.
			if it, ok := s.first(e, &root, &root); ok != (len(got) > 0) || ok && it.text() != got[0] {
				t.Errorf("%s: first = %q, %v; eval = %q", c.sel, it.text(), ok, got)
			}
		}
	})
}

// Selectors are checked against the transaction-set spec at load.
func TestSelectorSpecErrors(t *testing.T) {
	m, err := LoadFile("testdata/asn-856.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root := sctx{set: m.set, loops: allLoops(m.set.Root, nil)[:1]}
	cases := map[string]string{
		"BSN.BSN99":                  "segment BSN has no element BSN99",
		"BSN.BEG01":                  `"BEG01" is not an element of segment BSN`,
		"XYZ.XYZ01":                  `856 root has no segment or loop "XYZ"`,
		"HL_S.PO1.PO101":             `no segment or loop "PO1"`,
		"HL_S.N1.N101":               `no segment or loop "N1" here (it has:`,
		"HL_S.REF[REF09='x'].REF02":  "segment REF has no element REF09",
		"HL_S.REF[REF01=='x'].REF02": `expected a quoted value`,
		"HL_S.REF[REF01='x'.REF02":   "expected ]",
		"BSN.BSN02.X":                `"X" after an element value`,
		"HL_S.REF.REF04-9":           "REF04 is not a composite with a component 9",
	}
	for sel, want := range cases {
		s, err := parseSelector(sel)
		if err == nil {
			err = s.check(m.set, root)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", sel, err, want)
		}
	}
}

func writeMap(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.yaml")
	head := "mapping: t\nspec: edigw-map/v1\npartner: p\ndirection: inbound\nsource: {format: x12, version: \"004010\", transaction: \"856\"}\ntarget: {schema: ship-notice.v1}\n"
	if err := os.WriteFile(p, []byte(head+body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Load errors name the file, the line, the field and the problem.
func TestLoadErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{"output:\n  asnNumber: {from: BSN.BSN02, requird: true}\n", `m.yaml:8: asnNumber: unknown key "requird"`},
		{"output:\n  asnNumber: {from: BSN.BSN22}\n", "m.yaml:8: asnNumber: selector \"BSN.BSN22\": segment BSN has no element BSN22"},
		{"output:\n  a:\n    b: {from: HL_S.XX.XX01}\n", `m.yaml:9: a.b: selector "HL_S.XX.XX01"`},
		{"output:\n  orders:\n    foreach: HL_S.HL_O\n    object:\n      po: {from: PRF.PRF99}\n", "m.yaml:11: orders[].po: selector \"PRF.PRF99\": segment PRF has no element PRF99"},
		{"output:\n  x: {expr: \"value +\"}\n", `m.yaml:8: x: expression "value +"`},
		{"output:\n  x: {expr: \"vlaue + 1\"}\n", `uses unknown name(s) vlaue`},
		{"output:\n  x: {from: BSN.BSN02, lookup: nope}\n", `x.lookup: no table "nope"`},
		{"output:\n  x: {from: BSN.BSN02, type: money}\n", `x.type: "money" is not string, int`},
		{"output:\n  x: {from: BSN.BSN03, type: date, format: CCYYQQ}\n", `x.format: "CCYYQQ": use CCYY`},
		{"output:\n  x: {from: BSN.BSN02, col: A}\n", "col: needs a CSV source"},
		{"output:\n  x: {foreach: HL_S.HL_O}\n", "x: foreach needs object:"},
		{"output:\n  x: {from: BSN.BSN02, tz: Mars/Olympus}\n", "x.tz: unknown time zone Mars/Olympus"},
		{"output:\n  x: BSN.BSN02\nchecks:\n  - {name: c, expr: \"1 +\"}\n", "checks.c: expression"},
		{"outputs:\n  x: BSN.BSN02\n", `mapping spec: unknown key "outputs"`},
	}
	for _, c := range cases {
		_, err := LoadFile(writeMap(t, c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("body %q:\n error %v\n want  %q", c.body, err, c.want)
		}
	}
	// Several problems are reported at once.
	_, err := LoadFile(writeMap(t, "output:\n  a: BSN.BSN99\n  b: {from: BSN.BSN02, type: x}\n"))
	if le, ok := err.(*LoadError); !ok || len(le.Errs) != 2 {
		t.Errorf("want 2 errors at once, got %v", err)
	}
	// Unknown target schema.
	p := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(p, []byte("mapping: t\nspec: edigw-map/v1\ndirection: inbound\nsource: {format: x12, version: \"004010\", transaction: \"856\"}\ntarget: {schema: nope.v9}\noutput: {x: BSN.BSN02}\n"), 0o644)
	if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), "s.yaml:5: target.schema") {
		t.Errorf("unknown schema: %v", err)
	}
}

// mapWith loads a mapping body and maps the 856 sample with it (schema
// validation off: these fields are partial).
func mapWith(t *testing.T, body, data string) (Document, []string, error) {
	t.Helper()
	m, err := LoadFile(writeMap(t, body))
	if err != nil {
		t.Fatal(err)
	}
	m.Target.Schema = ""
	var doc Document
	var warns []string
	var merr error
	withTree(t, data, func(n *edi.Node) { doc, warns, merr = m.MapX12(n, Env{FileName: "f.edi", Partner: "p"}) })
	return doc, warns, merr
}

func TestRunErrorsNameFieldAndSelector(t *testing.T) {
	data := readFile(t, "testdata/asn-basic.edi")
	body := `output:
  billOfLading: {from: "HL_S.REF[REF01='XX'].REF02", required: true}
  carrier: {from: HL_S.TD5.TD503, lookup: scac, required: true}
  shipDate: {from: "BSN.BSN02", type: date}
  orders:
    foreach: HL_S.HL_O
    object:
      packs:
        foreach: HL_P
        object:
          sscc: {from: "MAN[MAN01='ZZ'].MAN02", required: true}
tables:
  scac: {FDEG: FedEx}
`
	_, _, err := mapWith(t, body, data)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`m.yaml:8: billOfLading: required (HL_S.REF[REF01='XX'].REF02 matched nothing)`,
		`m.yaml:9: carrier: "UPSN" is not in table scac (from HL_S.TD5.TD503)`,
		`m.yaml:10: shipDate: "ASN-7781" is not a date (CCYYMMDD) (from BSN.BSN02)`,
		`m.yaml:17: orders[0].packs[0].sscc: required (MAN[MAN01='ZZ'].MAN02 matched nothing)`,
		`m.yaml:17: orders[0].packs[1].sscc: required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestTypesAndFormats(t *testing.T) {
	data := readFile(t, "testdata/asn-basic.edi")
	body := `output:
  d8: {from: BSN.BSN03, type: date}
  d6: {const: "240229", type: date}
  dmy: {const: "12/05/2026", type: date, format: MM/DD/CCYY}
  dt: {from: BSN.BSN03, time_from: BSN.BSN04, type: datetime, tz: America/Chicago}
  dtUTC: {from: BSN.BSN03, time_from: BSN.BSN04, type: datetime}
  tm: {from: BSN.BSN04, type: time}
  dec: {from: "HL_S.TD1.TD107", type: decimal}
  implied: {const: "48000", type: decimal, scale: 2}
  exact: {const: "1234567890123456789", type: decimal, scale: 2}
  amount: {expr: "out.dec * 2"}
  int: {const: "1,250", type: int}
  yes: {const: "y", type: bool}
  no: {const: "N", type: bool}
  def: {from: "HL_S.REF[REF01='ZZ'].REF02", default: NONE}
  skipped: {from: "HL_S.REF[REF01='ZZ'].REF02"}
  upc: {from: HL_S.HL_O.HL_P.HL_I.LIN, pair: UP}
  vendor: {from: HL_S.HL_O.HL_P.HL_I.LIN, pair: VN}
  missingPair: {from: HL_S.HL_O.HL_P.HL_I.LIN, pair: BP}
  kg:
    from: "HL_S.TD1[TD106='G'].TD107"
    type: decimal
    let: {unit: "HL_S.TD1[TD106='G'].TD108"}
    expr: "unit == 'LB' ? round(value * 0.45359237 * 100) / 100 : value"
  onlyWhen: {const: "x", when: "partner == 'other'"}
  lines: {expr: "len(out)"}
`
	doc, _, err := mapWith(t, body, data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"d8": "2024-03-20", "d6": "2024-02-29", "dmy": "2026-12-05",
		"dt": "2024-03-20T14:15:00-05:00", "dtUTC": "2024-03-20T14:15:00Z", "tm": "14:15",
		"dec": 42.5, "implied": 480.0, "exact": json.Number("12345678901234567.89"), "amount": 85.0, "int": int64(1250), "yes": true, "no": false,
		"def": "NONE", "upc": "012345678905", "vendor": "ABC-100", "kg": 19.28,
	}
	for k, v := range want {
		if doc.Get(k) != v {
			t.Errorf("%s = %#v, want %#v", k, doc.Get(k), v)
		}
	}
	for _, k := range []string{"skipped", "missingPair", "onlyWhen"} {
		if _, ok := doc.Map()[k]; ok {
			t.Errorf("%s must be left out, got %v", k, doc.Get(k))
		}
	}
	if doc.Get("lines") != 17 { // the fields mapped before it at this level
		t.Errorf("out has %v entries", doc.Get("lines"))
	}
}

// LIN pairs are found by qualifier whatever their order.
func TestPairOrder(t *testing.T) {
	data := strings.Replace(readFile(t, "testdata/asn-basic.edi"), "LIN*2*UP*012345678912*VN*ABC-200", "LIN*2*VN*ABC-200*UP*012345678912", 1)
	doc, _, err := mapWith(t, "output:\n  items:\n    foreach: \"**.HL_I\"\n    object:\n      upc: {from: LIN, pair: UP}\n      vn: {from: LIN, pair: VN}\n", data)
	if err != nil {
		t.Fatal(err)
	}
	items := doc.Get("items").([]any)
	second := items[1].(map[string]any)
	if second["upc"] != "012345678912" || second["vn"] != "ABC-200" {
		t.Errorf("pairs: %v", second)
	}
}

func TestChecks(t *testing.T) {
	data := readFile(t, "testdata/asn-basic.edi")
	body := `output:
  asn: BSN.BSN02
checks:
  - {name: hl-count, let: {ctt: CTT.CTT01, hls: "**.HL"}, expr: "int(ctt) == len(hls)", severity: warn}
  - {name: not-seven, let: {ctt: CTT.CTT01}, expr: "ctt != '7'", severity: warn}
  - {name: asn-prefix, expr: "doc.asn startsWith 'SH'"}
`
	_, warns, err := mapWith(t, body, data)
	if len(warns) != 1 || !strings.Contains(warns[0], "check not-seven failed") {
		t.Errorf("warnings: %v", warns)
	}
	if err == nil || !strings.Contains(err.Error(), "m.yaml:12: check asn-prefix failed") {
		t.Errorf("error check: %v", err)
	}
}

func TestCSVErrors(t *testing.T) {
	m, err := LoadFile("testdata/inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	header := "Item Number,UPC,Warehouse,Qty On Hand,Qty Allocated,Unit Cost,Next Receipt,Status\n"
	_, _, err = m.MapCSV(strings.NewReader(header+"W-1,,DC-09,,,,,A\n,,DC-01,x,,,13/45/2026,A\n"), Env{FileName: "x.csv"})
	for _, want := range []string{
		`inventory.yaml:18: items[0].warehouseId: "DC-09" is not in table warehouse (from column "Warehouse")`,
		`inventory.yaml:16: items[1].sku: required (column "Item Number" matched nothing)`,
		`inventory.yaml:19: items[1].onHand: "x" is not an integer (from column "Qty On Hand")`,
		`inventory.yaml:23: items[1].nextReceipt: "13/45/2026" is not a date (MM/DD/CCYY)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	// A missing column is reported once, before any row.
	_, _, err = m.MapCSV(strings.NewReader("Item Number,Warehouse\nW-1,DC-01\n"), Env{FileName: "short.csv"})
	if err == nil || strings.Count(err.Error(), "\n") != 5 || !strings.Contains(err.Error(), `inventory.yaml:17: column "UPC" is not in the header of short.csv ("Item Number", "Warehouse")`) {
		t.Errorf("missing columns: %v", err)
	}
	_, _, err = m.MapCSV(strings.NewReader(""), Env{FileName: "empty.csv"})
	if err == nil || !strings.Contains(err.Error(), "empty.csv: CSV file is empty") {
		t.Errorf("empty: %v", err)
	}
}

// The schema check rejects a document that misses a required field.
func TestSchemaRejectsMappedDocument(t *testing.T) {
	m, err := LoadFile(writeMap(t, "output:\n  asnNumber: BSN.BSN02\n"))
	if err != nil {
		t.Fatal(err)
	}
	withTree(t, readFile(t, "testdata/asn-basic.edi"), func(n *edi.Node) {
		_, _, err := m.MapX12(n, Env{})
		if err == nil || !strings.Contains(err.Error(), "output does not satisfy ship-notice.v1") || !strings.Contains(err.Error(), "shipDate") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestOutboundErrors(t *testing.T) {
	m, err := LoadFile("testdata/po-850-out.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal([]byte(readFile(t, "testdata/po.json")), &doc)
	doc["shipTo"].(map[string]any)["name"] = strings.Repeat("A", 70) // the schema allows 120, N102 is 1-60
	var out bytes.Buffer
	err = m.Outbound(doc, TestEnvelope(m), &out)
	if err == nil || !strings.Contains(err.Error(), `po-850-out.yaml:15: N102: "AAAA`) || !strings.Contains(err.Error(), `must be 1-60 characters`) || out.Len() != 0 {
		t.Errorf("err = %v, out %q", err, out.String())
	}
	delete(doc, "lines")
	doc["poNumber"] = "1"
	if err := m.Outbound(doc, TestEnvelope(m), &out); err == nil || !strings.Contains(err.Error(), "input does not satisfy purchase-order.v1") {
		t.Errorf("schema check of the input: %v", err)
	}
	p := filepath.Join(t.TempDir(), "o.yaml")
	os.WriteFile(p, []byte(`mapping: o
spec: edigw-map/v1
direction: outbound
source: {format: json, schema: purchase-order.v1}
target: {format: x12, version: "004010", transaction: "850"}
segments:
  - BEG: {BEG01: "99", BEG03: =po.poNumber}
  - BSN: {BSN01: "00"}
  - PO1: {PO199: x}
`), 0o644)
	_, err = LoadFile(p)
	for _, want := range []string{
		`o.yaml:7: BEG01: "99" is not a code of data element 353`,
		`o.yaml:7: BEG: mandatory element BEG02 has no value`,
		`o.yaml:8: segment BSN is not in transaction set 850`,
		`o.yaml:9: PO1: "PO199" is not an element of PO1`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}
