package mapping

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Canonical document schemas (JSON Schema 2020-12), one file per document
// and major version: schemas/<document>.v<N>.json with $id
// SchemaBaseURL + "<document>.v<N>.json". See schemas/README.md.
//
//go:embed schemas/*.json
var schemaFiles embed.FS

// SchemaBaseURL is the prefix of every canonical schema's $id.
const SchemaBaseURL = "https://edigw.dev/schemas/"

type schemaSet struct {
	byName map[string]*jsonschema.Schema
	names  []string
}

// loadSchemas compiles every embedded schema once, on first use.
var loadSchemas = sync.OnceValues(compileSchemas)

func compileSchemas() (*schemaSet, error) {
	files, err := fs.Glob(schemaFiles, "schemas/*.json")
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // "2024-13-40" is not a date
	set := &schemaSet{byName: map[string]*jsonschema.Schema{}}
	for _, file := range files {
		raw, err := schemaFiles.ReadFile(file)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("mapping: schema %s: %w", file, err)
		}
		name := strings.TrimSuffix(path.Base(file), ".json")
		id := SchemaBaseURL + name + ".json"
		if m, ok := doc.(map[string]any); !ok || m["$id"] != id {
			return nil, fmt.Errorf("mapping: schema %s: $id must be %q", file, id)
		}
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("mapping: schema %s: %w", file, err)
		}
		set.names = append(set.names, name)
	}
	slices.Sort(set.names)
	for _, name := range set.names {
		sch, err := c.Compile(SchemaBaseURL + name + ".json")
		if err != nil {
			return nil, fmt.Errorf("mapping: schema %s: %w", name, err)
		}
		set.byName[name] = sch
	}
	return set, nil
}

// schemaName reduces "ship-notice.v1", "ship-notice.v1.json",
// "schemas/ship-notice.v1.json" or the $id URL to "ship-notice.v1".
func schemaName(name string) string {
	name = strings.TrimPrefix(name, SchemaBaseURL)
	name = strings.TrimPrefix(name, "schemas/")
	return strings.TrimSuffix(name, ".json")
}

// Schema returns the compiled canonical schema called name: "ship-notice.v1",
// "ship-notice.v1.json", "schemas/ship-notice.v1.json" or its $id.
func Schema(name string) (*jsonschema.Schema, error) {
	set, err := loadSchemas()
	if err != nil {
		return nil, err
	}
	if sch, ok := set.byName[schemaName(name)]; ok {
		return sch, nil
	}
	return nil, fmt.Errorf("mapping: unknown schema %q (have %s)", name, strings.Join(set.names, ", "))
}

// SchemaNames lists the canonical schemas, sorted ("functional-ack-status.v1",
// ...); nil if the embedded schemas do not compile (Schema returns why).
func SchemaNames() []string {
	set, err := loadSchemas()
	if err != nil {
		return nil
	}
	return slices.Clone(set.names)
}

// SchemaViolation is one reason a document does not match its schema.
type SchemaViolation struct {
	Path   string // JSON pointer into the document, "" for the document itself
	Reason string // e.g. "missing property", `"2024-13-40" is not valid date: ...`
}

func (v SchemaViolation) String() string {
	p := v.Path
	if p == "" {
		p = "(root)"
	}
	return p + ": " + v.Reason
}

// SchemaError is returned by ValidateDocument for a document that does not
// match its schema. Error() gives one line per violation:
//
//	ship-notice.v1: /orders/0/poNumber: missing property
type SchemaError struct {
	Schema     string            // "ship-notice.v1"
	Violations []SchemaViolation // sorted by Path, then Reason
	Cause      *jsonschema.ValidationError
}

func (e *SchemaError) Error() string {
	var sb strings.Builder
	for i, v := range e.Violations {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(e.Schema)
		sb.WriteString(": ")
		sb.WriteString(v.String())
	}
	return sb.String()
}

func (e *SchemaError) Unwrap() error { return e.Cause }

// ValidateDocument checks a Document (as its Map) or a decoded JSON document
// (map[string]any, []any, string, bool, nil, any Go integer or float,
// json.Number) against the canonical schema name. Other Go values (structs,
// typed maps and slices) and raw JSON ([]byte, json.RawMessage) are
// normalised through encoding/json with UseNumber first. A mismatch is a
// *SchemaError listing every violation.
func ValidateDocument(name string, doc any) error {
	sch, err := Schema(name)
	if err != nil {
		return err
	}
	name = schemaName(name)
	v, err := schemaNormalise(doc)
	if err != nil {
		return fmt.Errorf("%s: document is not JSON: %w", name, err)
	}
	err = sch.Validate(v)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return &SchemaError{Schema: name, Violations: schemaViolations(verr), Cause: verr}
}

// schemaNormalise returns doc unchanged when it is made only of the types the
// validator understands, and otherwise round-trips it through encoding/json.
func schemaNormalise(doc any) (any, error) {
	if d, ok := doc.(Document); ok {
		doc = d.Map()
	}
	var raw []byte
	switch d := doc.(type) {
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		if schemaPlainJSON(doc) {
			return doc, nil
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(raw))
}

func schemaPlainJSON(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, json.Number, float64, float32,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	case map[string]any:
		for _, e := range v {
			if !schemaPlainJSON(e) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range v {
			if !schemaPlainJSON(e) {
				return false
			}
		}
		return true
	}
	return false
}

var schemaPrinter = message.NewPrinter(language.English)

// schemaViolations flattens the library's error tree into leaf violations.
func schemaViolations(root *jsonschema.ValidationError) []SchemaViolation {
	var out []SchemaViolation
	schemaCollect(root, &out)
	if len(out) == 0 { // cannot happen, but never return an empty error
		out = append(out, SchemaViolation{Path: schemaPointer(root.InstanceLocation), Reason: root.ErrorKind.LocalizedString(schemaPrinter)})
	}
	slices.SortFunc(out, func(a, b SchemaViolation) int {
		if c := schemaComparePointers(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return slices.Compact(out)
}

func schemaCollect(e *jsonschema.ValidationError, out *[]SchemaViolation) {
	at := schemaPointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, p := range k.Missing {
			*out = append(*out, SchemaViolation{Path: at + "/" + schemaEscape(p), Reason: "missing property"})
		}
		return
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			*out = append(*out, SchemaViolation{Path: at + "/" + schemaEscape(p), Reason: "unknown property"})
		}
		return
	case *kind.AnyOf, *kind.OneOf:
		if len(e.Causes) > 0 {
			*out = append(*out, SchemaViolation{Path: at, Reason: schemaAlternatives(e)})
			return
		}
	}
	if len(e.Causes) == 0 {
		*out = append(*out, SchemaViolation{Path: at, Reason: e.ErrorKind.LocalizedString(schemaPrinter)})
		return
	}
	// Schema, Group, Reference, AllOf, and any other kind with causes (if/then,
	// items, properties...): the causes say what is wrong.
	for _, c := range e.Causes {
		schemaCollect(c, out)
	}
}

// schemaAlternatives describes a failed anyOf/oneOf as one violation: "needs one of
// buyerItem, vendorItem, upc, gtin" when each alternative is a single missing
// property, else the alternatives' own violations joined with " or ".
func schemaAlternatives(e *jsonschema.ValidationError) string {
	at := schemaPointer(e.InstanceLocation)
	var missing, reasons []string
	for _, c := range e.Causes {
		var vs []SchemaViolation
		schemaCollect(c, &vs)
		if len(vs) == 1 && vs[0].Reason == "missing property" {
			if p, ok := strings.CutPrefix(vs[0].Path, at+"/"); ok && !strings.Contains(p, "/") {
				missing = append(missing, p)
			}
		}
		var parts []string
		for _, v := range vs {
			if rel := strings.TrimPrefix(v.Path, at+"/"); rel != v.Path {
				parts = append(parts, rel+": "+v.Reason)
			} else {
				parts = append(parts, v.Reason)
			}
		}
		reasons = append(reasons, strings.Join(parts, ", "))
	}
	if len(missing) == len(e.Causes) {
		return "missing property: needs one of " + strings.Join(missing, ", ")
	}
	return "matches none of the alternatives: " + strings.Join(reasons, " or ")
}

func schemaPointer(tokens []string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(schemaEscape(t))
	}
	return sb.String()
}

func schemaEscape(t string) string {
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}

// schemaComparePointers orders JSON pointers token by token, array indexes
// numerically, so /lines/2 comes before /lines/10.
func schemaComparePointers(a, b string) int {
	ta, tb := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(ta) && i < len(tb); i++ {
		if ta[i] == tb[i] {
			continue
		}
		na, ea := strconv.Atoi(ta[i])
		nb, eb := strconv.Atoi(tb[i])
		switch {
		case ea == nil && eb == nil:
			return na - nb
		case ea == nil:
			return -1
		case eb == nil:
			return 1
		}
		return strings.Compare(ta[i], tb[i])
	}
	return len(ta) - len(tb)
}
