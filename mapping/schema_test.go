package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var wantSchemas = []string{
	"functional-ack-status.v1",
	"inventory-snapshot.v1",
	"invoice.v1",
	"po-acknowledgement.v1",
	"purchase-order.v1",
	"ship-notice.v1",
}

func TestSchemaCompileAll(t *testing.T) {
	if got := SchemaNames(); !slices.Equal(got, wantSchemas) {
		t.Fatalf("SchemaNames() = %v, want %v", got, wantSchemas)
	}
	for _, name := range wantSchemas {
		sch, err := Schema(name)
		if err != nil {
			t.Fatalf("Schema(%q): %v", name, err)
		}
		for _, alias := range []string{name + ".json", "schemas/" + name + ".json", SchemaBaseURL + name + ".json"} {
			if s2, err := Schema(alias); err != nil || s2 != sch {
				t.Errorf("Schema(%q) = %p, %v; want the schema of %q", alias, s2, err, name)
			}
		}
	}
	_, err := Schema("ship-notice.v9")
	if err == nil || !strings.Contains(err.Error(), "unknown schema") || !strings.Contains(err.Error(), "ship-notice.v1") {
		t.Errorf("Schema(ship-notice.v9) error = %v, want unknown schema listing the known ones", err)
	}
	if err := ValidateDocument("nope.v1", map[string]any{}); err == nil {
		t.Error("ValidateDocument with an unknown schema: no error")
	}
}

// readSchemaExample decodes examples/<name>.json with json.Number (as the
// validator's own decoder does) or float64 (as plain json.Unmarshal does).
func readSchemaExample(t *testing.T, name string, useNumber bool) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("schemas", "examples", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if useNumber {
		dec.UseNumber()
	}
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("examples/%s.json: %v", name, err)
	}
	return doc
}

func TestSchemaExamplesValid(t *testing.T) {
	examples, _ := filepath.Glob(filepath.Join("schemas", "examples", "*.json"))
	var names []string
	for _, e := range examples {
		names = append(names, strings.TrimSuffix(filepath.Base(e), ".json"))
	}
	if !slices.Equal(names, wantSchemas) {
		t.Errorf("examples %v, want one per schema %v", names, wantSchemas)
	}
	for _, name := range wantSchemas {
		for _, useNumber := range []bool{true, false} {
			if err := ValidateDocument(name, readSchemaExample(t, name, useNumber)); err != nil {
				t.Errorf("examples/%s.json (UseNumber=%v):\n%v", name, useNumber, err)
			}
		}
		raw, _ := os.ReadFile(filepath.Join("schemas", "examples", name+".json"))
		if err := ValidateDocument(name, json.RawMessage(raw)); err != nil {
			t.Errorf("examples/%s.json as raw JSON: %v", name, err)
		}
	}
}

// editDoc walks a slash-separated path ("orders/0/poNumber") and deletes the
// last key (del) or sets it to v.
func editDoc(t *testing.T, doc any, path string, v any, del bool) {
	t.Helper()
	toks := strings.Split(path, "/")
	for i, tok := range toks {
		last := i == len(toks)-1
		switch d := doc.(type) {
		case map[string]any:
			if last {
				if del {
					delete(d, tok)
				} else {
					d[tok] = v
				}
				return
			}
			doc = d[tok]
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n >= len(d) {
				t.Fatalf("bad path %s at %s", path, tok)
			}
			if last {
				d[n] = v
				return
			}
			doc = d[n]
		default:
			t.Fatalf("bad path %s at %s", path, tok)
		}
	}
}

func TestSchemaRejects(t *testing.T) {
	type edit struct {
		path string
		v    any
		del  bool
	}
	cases := []struct {
		name   string
		schema string
		edits  []edit
		want   []string // each must appear in the error
	}{
		{"missing poNumber in order", "ship-notice.v1", []edit{{path: "orders/0/poNumber", del: true}},
			[]string{"ship-notice.v1: /orders/0/poNumber: missing property"}},
		{"missing asnNumber", "ship-notice.v1", []edit{{path: "asnNumber", del: true}},
			[]string{"ship-notice.v1: /asnNumber: missing property"}},
		{"unknown property", "ship-notice.v1", []edit{{path: "orders/0/packs/0/items/0/qty", v: 3}},
			[]string{"ship-notice.v1: /orders/0/packs/0/items/0/qty: unknown property"}},
		{"unknown top-level property", "invoice.v1", []edit{{path: "grandTotal", v: 1}},
			[]string{"invoice.v1: /grandTotal: unknown property"}},
		{"bad date", "ship-notice.v1", []edit{{path: "shipDate", v: "2024-13-40"}},
			[]string{"ship-notice.v1: /shipDate: ", "2024-13-40", "date"}},
		{"X12 date not converted", "purchase-order.v1", []edit{{path: "poDate", v: "20261127"}},
			[]string{"/poDate: ", "date"}},
		{"date-time without zone", "ship-notice.v1", []edit{{path: "createdAt", v: "2026-12-02T10:15:00"}},
			[]string{"/createdAt: ", "date-time"}},
		{"order with neither packs nor items", "ship-notice.v1", []edit{{path: "orders/1/items", del: true}},
			[]string{"/orders/1: missing property: needs one of packs, items"}},
		{"bad sscc", "ship-notice.v1", []edit{{path: "orders/0/packs/0/sscc", v: "00000614141123456789"}},
			[]string{"/orders/0/packs/0/sscc: "}},
		{"po line without item id", "purchase-order.v1", []edit{
			{path: "lines/1/buyerItem", del: true}, {path: "lines/1/vendorItem", del: true}, {path: "lines/1/gtin", del: true}},
			[]string{"purchase-order.v1: /lines/1: missing property: needs one of buyerItem, vendorItem, upc, gtin"}},
		{"po without lines", "purchase-order.v1", []edit{{path: "lines", v: []any{}}},
			[]string{"/lines: "}},
		{"po line quantity as string", "purchase-order.v1", []edit{{path: "lines/0/quantity", v: "24"}},
			[]string{"/lines/0/quantity: ", "number"}},
		{"party without id or name", "purchase-order.v1", []edit{{path: "shipTo", v: map[string]any{"idQualifier": "92"}}},
			[]string{"/shipTo: missing property: needs one of locationId, name"}},
		{"address typo", "purchase-order.v1", []edit{{path: "shipTo/address/zip", v: "60601"}},
			[]string{"/shipTo/address/zip: unknown property"}},
		{"bad enum", "purchase-order.v1", []edit{{path: "type", v: "SA"}},
			[]string{"/type: "}},
		{"ack line without status", "po-acknowledgement.v1", []edit{{path: "lines/0/status", v: []any{}}},
			[]string{"/lines/0/status: "}},
		{"ack status missing code", "po-acknowledgement.v1", []edit{{path: "lines/0/status/1/code", del: true}},
			[]string{"/lines/0/status/1/code: missing property"}},
		{"invoice without totalAmount", "invoice.v1", []edit{{path: "totalAmount", del: true}},
			[]string{"invoice.v1: /totalAmount: missing property"}},
		{"invoice total as implied-decimal string", "invoice.v1", []edit{{path: "totalAmount", v: "12825"}},
			[]string{"/totalAmount: ", "number"}},
		{"invoice line without price", "invoice.v1", []edit{{path: "lines/1/unitPrice", del: true}},
			[]string{"/lines/1/unitPrice: missing property"}},
		{"inventory fractional onHand", "inventory-snapshot.v1", []edit{{path: "items/0/onHand", v: 1.5}},
			[]string{"/items/0/onHand: ", "integer"}},
		{"inventory upc without leading zero", "inventory-snapshot.v1", []edit{{path: "items/0/upc", v: "12345678905"}},
			[]string{"/items/0/upc: "}},
		{"997 without groupCode", "functional-ack-status.v1", []edit{{path: "groupCode", del: true}},
			[]string{"functional-ack-status.v1: /groupCode: missing property"}},
		{"TA1 without interchange note", "functional-ack-status.v1", []edit{{path: "ackType", v: "TA1"}},
			[]string{"/interchangeNote: missing property"}},
		{"ack set code", "functional-ack-status.v1", []edit{{path: "transactionSets/1/code", v: "Q"}},
			[]string{"/transactionSets/1/code: "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := readSchemaExample(t, tc.schema, true)
			for _, e := range tc.edits {
				editDoc(t, doc, e.path, e.v, e.del)
			}
			err := ValidateDocument(tc.schema, doc)
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
			var se *SchemaError
			if !errors.As(err, &se) || se.Schema != tc.schema || len(se.Violations) == 0 || se.Cause == nil {
				t.Fatalf("error %T %v, want *SchemaError for %s", err, err, tc.schema)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, tc.schema+": /") && !strings.HasPrefix(line, tc.schema+": (root)") {
					t.Errorf("line %q does not start with schema and JSON pointer", line)
				}
			}
		})
	}
}

func TestSchemaRootViolation(t *testing.T) {
	err := ValidateDocument("ship-notice.v1", []any{})
	if err == nil || !strings.HasPrefix(err.Error(), "ship-notice.v1: (root): ") {
		t.Fatalf("array as ship notice: %v", err)
	}
}

func TestSchemaViolationsDeterministic(t *testing.T) {
	doc := readSchemaExample(t, "purchase-order.v1", true)
	lines := doc["lines"].([]any)
	for len(lines) < 12 {
		lines = append(lines, map[string]any{"lineNo": strconv.Itoa(len(lines)), "quantity": "x", "bogus": true})
	}
	doc["lines"] = lines
	delete(doc, "poNumber")
	doc["poDate"] = "2026-02-30"
	doc["shipTo"].(map[string]any)["typo"] = 1

	first := ValidateDocument("purchase-order.v1", doc)
	if first == nil {
		t.Fatal("accepted")
	}
	for range 20 {
		if again := ValidateDocument("purchase-order.v1", doc); again.Error() != first.Error() {
			t.Fatalf("order changed:\n%v\n---\n%v", first, again)
		}
	}
	var se *SchemaError
	errors.As(first, &se)
	var paths []string
	for _, v := range se.Violations {
		paths = append(paths, v.Path)
	}
	want := []string{"/lines/2", "/lines/2/bogus", "/lines/2/quantity", "/lines/10", "/lines/11/quantity", "/poDate", "/poNumber", "/shipTo/typo"}
	for i := 1; i < len(want); i++ {
		a, b := slices.Index(paths, want[i-1]), slices.Index(paths, want[i])
		if a < 0 || b < 0 || a > b {
			t.Fatalf("violations not in path order (%s before %s):\n%v", want[i-1], want[i], first)
		}
	}
	if n := strings.Count(first.Error(), "\n") + 1; n != len(se.Violations) {
		t.Errorf("%d lines for %d violations", n, len(se.Violations))
	}
}

// shipNoticeWith builds a minimal ship notice whose numbers are of Go type
// qty's type, as a mapping might produce them.
func shipNoticeWith(qty, weight, count any) map[string]any {
	return map[string]any{
		"asnNumber":    "SH1",
		"shipDate":     "2026-12-02",
		"packageCount": count,
		"grossWeight":  map[string]any{"value": weight, "unit": "KG"},
		"orders": []any{map[string]any{
			"poNumber": "PO1",
			"packs": []any{map[string]any{
				"sscc":  "000614141123456789",
				"items": []any{map[string]any{"upc": "012345678905", "quantity": qty, "uom": "EA"}},
			}},
		}},
	}
}

func TestSchemaNumberTypes(t *testing.T) {
	for _, tc := range []struct {
		name              string
		qty, weight, cnt  any
		wantErr           string
		wantErrNotContain string
	}{
		{name: "int", qty: 12, weight: 18, cnt: 2},
		{name: "float64", qty: 12.0, weight: 18.82, cnt: 2.0},
		{name: "int64/uint8", qty: int64(12), weight: float32(18.5), cnt: uint8(2)},
		{name: "json.Number", qty: json.Number("12"), weight: json.Number("18.82"), cnt: json.Number("2")},
		{name: "fractional count", qty: 12, weight: 18, cnt: 2.5, wantErr: "/packageCount: "},
		{name: "negative quantity", qty: -1, weight: 18, cnt: 2, wantErr: "/orders/0/packs/0/items/0/quantity: "},
	} {
		err := ValidateDocument("ship-notice.v1", shipNoticeWith(tc.qty, tc.weight, tc.cnt))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}

	// Go values that are not plain JSON values go through encoding/json.
	type item struct {
		UPC      string  `json:"upc"`
		Quantity float64 `json:"quantity"`
	}
	typed := map[string]any{
		"asnNumber": "SH1",
		"shipDate":  "2026-12-02",
		"orders": []map[string]any{{
			"poNumber": "PO1",
			"items":    []item{{UPC: "012345678905", Quantity: 3}},
		}},
	}
	if err := ValidateDocument("ship-notice.v1", typed); err != nil {
		t.Errorf("typed Go values: %v", err)
	}
	if err := ValidateDocument("ship-notice.v1", map[string]any{"asnNumber": make(chan int)}); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("channel in document: %v", err)
	}
	if err := ValidateDocument("inventory-snapshot.v1", map[string]any{
		"supplier": "ACME", "items": []any{map[string]any{"sku": "W-1", "onHand": float64(3), "allocated": int32(1), "unitCost": 4}},
	}); err != nil {
		t.Errorf("integer-valued float64 for an integer field: %v", err)
	}
}

// TestSchemaFilesContract checks the conventions the ERP relies on: every
// schema is self-describing, every property is documented, objects are closed,
// and $defs shared between files are identical.
func TestSchemaFilesContract(t *testing.T) {
	shared := map[string]any{}
	sharedIn := map[string]string{}
	for _, name := range wantSchemas {
		raw, err := schemaFiles.ReadFile("schemas/" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		var s map[string]any
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"$schema", "$id", "title", "description", "x-edigw-document"} {
			if s[k] == nil || s[k] == "" {
				t.Errorf("%s: no %s", name, k)
			}
		}
		if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema %v", name, s["$schema"])
		}
		if doc := s["x-edigw-document"]; doc != strings.TrimSuffix(name, ".v1") {
			t.Errorf("%s: x-edigw-document %v", name, doc)
		}
		checkSchemaNode(t, name, "", s)

		defs, _ := s["$defs"].(map[string]any)
		for def, body := range defs {
			if !bytes.Contains(raw, []byte(`"#/$defs/`+def+`"`)) {
				t.Errorf("%s: $defs/%s is never used", name, def)
			}
			if prev, ok := shared[def]; ok && !reflect.DeepEqual(prev, body) {
				t.Errorf("$defs/%s differs between %s and %s", def, sharedIn[def], name)
			} else if !ok {
				shared[def], sharedIn[def] = body, name
			}
		}
	}
}

func checkSchemaNode(t *testing.T, file, at string, node any) {
	switch n := node.(type) {
	case []any:
		for i, e := range n {
			checkSchemaNode(t, file, at+"/"+strconv.Itoa(i), e)
		}
	case map[string]any:
		inIf := strings.HasSuffix(at, "/if") || strings.Contains(at, "/if/")
		if props, ok := n["properties"].(map[string]any); ok && !inIf {
			if n["additionalProperties"] != false {
				t.Errorf("%s%s: object without additionalProperties: false", file, at)
			}
			for p, ps := range props {
				if d, _ := ps.(map[string]any)["description"].(string); len(d) < 8 {
					t.Errorf("%s%s/properties/%s: no description", file, at, p)
				}
			}
		}
		if defs, ok := n["$defs"].(map[string]any); ok {
			for d, ds := range defs {
				if desc, _ := ds.(map[string]any)["description"].(string); desc == "" {
					t.Errorf("%s/$defs/%s: no description", file, d)
				}
			}
		}
		for k, v := range n {
			checkSchemaNode(t, file, at+"/"+k, v)
		}
	}
}
