package mapping

import (
	"encoding/json"
	"math"
	"testing"
)

// Marshal writes exactly what encoding/json writes for documents.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	docs := []Document{
		{"a": "x", "b": 1.5, "c": int64(-3), "d": true, "e": nil, "f": json.Number("12.50"),
			"g": []any{"<&>", "é\u2028\x01\"\\\n\t", 1e21, 1e-7, 0.000001, 123456789.0, math.Copysign(0, -1), Document{"z": 1, "y": []any{}}}, "h": Document{}},
		{"bad utf8": "a\xffb", "int": 7, "emoji": "🚚"},
	}
	for _, d := range docs {
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if _, err := Marshal(Document{"x": math.NaN()}); err == nil {
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
		d := Document{s: []any{s, x, Document{"k": s}}}
		want, _ := json.Marshal(d)
		got, err := Marshal(d)
		if err != nil || string(got) != string(want) {
			t.Fatalf("got %s (%v)\nwant %s", got, err, want)
		}
	})
}
