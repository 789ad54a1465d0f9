package mapping

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// Marshal writes exactly what encoding/json writes for documents.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	docs := []map[string]any{
		{"a": "x", "b": 1.5, "c": int64(-3), "d": true, "e": nil, "f": json.Number("12.50"),
			"g": []any{"<&>", "é\u2028\x01\"\\\n\t", 1e21, 1e-7, 0.000001, 123456789.0, math.Copysign(0, -1), map[string]any{"z": 1, "y": []any{}}}, "h": map[string]any{}},
		{"bad utf8": "a\xffb", "int": 7, "emoji": "🚚"},
	}
	for _, d := range docs {
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Marshal(DocumentFrom(d))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if _, err := Marshal(DocumentFrom(map[string]any{"x": math.NaN()})); err == nil {
		t.Error("NaN must be an error, as in encoding/json")
	}
}

// FuzzMarshal: any string value renders as encoding/json renders it.
func FuzzMarshal(f *testing.F) {
	f.Add("plain", 1.25)
	f.Add("<\x00\xff\u2029>", -1e-9)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		d := map[string]any{s: []any{s, x, map[string]any{"k": s}}}
		want, _ := json.Marshal(d)
		got, err := Marshal(DocumentFrom(d))
		if err != nil || string(got) != string(want) {
			t.Fatalf("got %s (%v)\nwant %s", got, err, want)
		}
	})
}

// A mapped document renders as encoding/json renders its Map: every kind
// of value, objects left empty or out, lists, what expressions returned.
func TestMarshalMappedMatchesEncodingJSON(t *testing.T) {
	data := readFile(t, "testdata/asn-basic.edi")
	for _, body := range []string{
		`output:
  asn: BSN.BSN02
  date: {from: BSN.BSN03, type: date}
  at: {from: BSN.BSN03, time_from: BSN.BSN04, type: datetime, tz: America/Chicago}
  weight: {from: HL_S.TD1.TD107, type: decimal}
  tiny: {const: "0.0000001", type: decimal}
  big: {const: "1000000000000000000000", type: decimal}
  exact: {const: "1234567890123456789", type: decimal, scale: 2}
  trailing: {const: "12.50", type: decimal}
  count: {const: "1,250", type: int}
  yes: {const: "y", type: bool}
  html: {const: "<a & \"b\">\u2028é"}
  computed: {expr: "[out.weight * 2, 'x', {'k': out.count}, nil, true]"}
  text: {expr: "'t' + string(out.count)"}
  orders:
    foreach: HL_S.HL_O
    object:
      po: PRF.PRF01
      packs:
        foreach: HL_P
        object:
          sscc: MAN.MAN02
          items: {foreach: HL_I, object: {upc: {from: LIN, pair: UP}, qty: {from: SN1.SN102, type: decimal}}}
  carrier: {scac: HL_S.TD5.TD503, none: HL_S.TD5.TD505}
  gone: {nothing: HL_S.TD5.TD504}
`,
		`options: {omit_empty: false}
output:
  asn: BSN.BSN02
  empty: {expr: "''"}
  missing: {from: "HL_S.REF[REF01='ZZ'].REF02"}
  none: {foreach: "HL_S.REF[REF01='ZZ']", object: {x: REF02}}
  hollow: {nothing: "HL_S.REF[REF01='ZZ'].REF02"}
`,
	} {
		doc, _, err := mapWith(t, body, data)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(doc.Map())
		if err != nil {
			t.Fatal(err)
		}
		got, err := Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		if viaJSON, err := json.Marshal(doc); err != nil || string(viaJSON) != string(want) {
			t.Errorf("json.Marshal(doc) = %s, %v", viaJSON, err)
		}
	}
}

// jsonFloatText accepts a decimal text only when it is what encoding/json
// writes for its float64, and accepts the usual quantities and prices.
func TestJSONFloatText(t *testing.T) {
	for _, s := range []string{"0", "3", "24", "1.25", "12.5", "0.5", "0.000001", "123456789012345"} {
		if !jsonFloatText(s) {
			t.Errorf("%s not taken as is", s)
		}
	}
	check := func(s string) {
		if !jsonFloatText(s) {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if b, _ := appendFloat(nil, f); string(b) != s {
			t.Errorf("%s would be written %s", s, b)
		}
	}
	digits := []string{"0", "00", "1", "5", "9", "10", "99", "100", "123", "4500", "0001", "999999999999999", "9999999999999999", "1234567"}
	for _, a := range digits {
		for _, b := range digits {
			check(a)
			check(a + "." + b)
			check(a + "000000000000000000")
			check(a + "." + "00000" + b)
			check(a + "." + "000000" + b)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		n := 1 + rnd.IntN(24)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rnd.IntN(10))
		}
		if d := rnd.IntN(n + 1); d > 0 && d < n {
			b = append(b[:d], append([]byte{'.'}, b[d:]...)...)
		}
		check(string(b))
	}
}
