package api

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// The OpenAPI description (docs/openapi.yaml) must list exactly the routes
// the gateway serves, say which role each needs, and describe the JSON the
// handlers write. These tests keep it honest.

const openAPIFile = "../../docs/openapi.yaml"

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// spec is docs/openapi.yaml as generic YAML.
type spec map[string]any

func loadSpec(t *testing.T) spec {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	if v, _ := s["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("%s: openapi is %q, want 3.1.x", openAPIFile, v)
	}
	return s
}

// operation is one method of one path of the spec.
type operation struct {
	method, path string
	op           map[string]any
}

// pattern is the operation as a net/http pattern, e.g.
// "GET /api/v1/documents/{id}".
func (o operation) pattern() string { return strings.ToUpper(o.method) + " " + o.path }

func (s spec) operations(t *testing.T) []operation {
	t.Helper()
	paths, ok := s["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		t.Fatalf("%s: no paths", openAPIFile)
	}
	var out []operation
	for _, p := range sortedKeys(paths) {
		item, ok := paths[p].(map[string]any)
		if !ok {
			t.Fatalf("%s: paths[%q] is not a path item", openAPIFile, p)
		}
		for _, m := range sortedKeys(item) {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			op, ok := item[m].(map[string]any)
			if !ok {
				t.Fatalf("%s: %s %s is not an operation", openAPIFile, strings.ToUpper(m), p)
			}
			out = append(out, operation{method: m, path: p, op: op})
		}
	}
	return out
}

// resolve follows a local reference ("#/components/schemas/File").
func (s spec) resolve(ref string) (any, bool) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = map[string]any(s)
	for _, part := range strings.Split(rest, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var pathParam = regexp.MustCompile(`\{[^}/]+\}`)

// TestOpenAPIRoutes checks both ways that the operations of
// docs/openapi.yaml are the routes of (*Server).Register.
//
// One way is exact: each documented operation is turned into a request
// ({param} replaced by "x") and the ServeMux that Register filled must
// route it to the very same pattern. The other way needs the list of the
// patterns Register knows, which a ServeMux does not give out; they are
// read from Register's source in api.go instead (every call of h,
// mux.HandleFunc or mux.Handle with a string literal). That is a
// source-level check, acceptable here: a registration the parser does not
// understand fails the test rather than being skipped, and every pattern
// read is checked against the real mux too.
//
// Operations with x-registered-by are served by another file on the same
// listener (/metrics, by gateway/http.go); that file must register the
// pattern.
func TestOpenAPIRoutes(t *testing.T) {
	s := loadSpec(t)
	mux := http.NewServeMux()
	(&Server{}).Register(mux) // Register only builds closures: nil fields are not touched

	documented := map[string]bool{}
	for _, o := range s.operations(t) {
		want := o.pattern()
		documented[want] = true
		if by, ok := o.op["x-registered-by"].(string); ok {
			if !slices.Contains(sourcePatterns(t, filepath.Join("../..", by), ""), want) {
				t.Errorf("%s: route %q is documented as registered by %s, which does not register it", openAPIFile, want, by)
			}
			continue
		}
		target := pathParam.ReplaceAllString(o.path, "x")
		req := httptest.NewRequest(strings.ToUpper(o.method), target, nil)
		if _, got := mux.Handler(req); got != want {
			if got == "" {
				t.Errorf("%s documents route %q, but (*Server).Register does not register it (%s %s finds no route)",
					openAPIFile, want, req.Method, target)
			} else {
				t.Errorf("%s documents route %q, but %s %s is served by the route %q", openAPIFile, want, req.Method, target, got)
			}
		}
	}

	registered := sourcePatterns(t, "api.go", "Register")
	if len(registered) < 3 {
		t.Fatalf("api.go: read only %d patterns from Register: %q", len(registered), registered)
	}
	for _, p := range registered {
		method, path, _ := strings.Cut(p, " ")
		req := httptest.NewRequest(method, pathParam.ReplaceAllString(path, "x"), nil)
		if _, got := mux.Handler(req); got != p {
			t.Errorf("api.go: read the pattern %q from Register, but the mux routes %s %s to %q (the test's reading of api.go is wrong)",
				p, method, req.URL.Path, got)
		}
		if !documented[p] {
			t.Errorf("(*Server).Register registers the route %q, which %s does not document", p, openAPIFile)
		}
	}
}

// sourcePatterns reads the route patterns registered in a Go file: the
// string literals passed first to mux.HandleFunc, mux.Handle (any receiver)
// or, in api.go, the h helper. With fn set, only that function is read.
func sourcePatterns(t *testing.T, file, fn string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var root ast.Node = f
	if fn != "" {
		root = nil
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == fn {
				root = fd
			}
		}
		if root == nil {
			t.Fatalf("%s: no function %s", file, fn)
		}
	}
	var out []string
	ast.Inspect(root, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		var name string
		switch f := call.Fun.(type) {
		case *ast.Ident:
			name = f.Name
		case *ast.SelectorExpr:
			name = f.Sel.Name
		}
		if name != "h" && name != "HandleFunc" && name != "Handle" {
			return true
		}
		switch a := call.Args[0].(type) {
		case *ast.BasicLit:
			if a.Kind == token.STRING {
				p, err := strconv.Unquote(a.Value)
				if err != nil {
					t.Fatalf("%s: %s: %v", file, a.Value, err)
				}
				out = append(out, p)
				return true
			}
		case *ast.Ident:
			if a.Name == "pattern" { // inside the h helper itself
				return true
			}
		}
		t.Errorf("%s: a route registration whose pattern is not a string literal (%s(%T ...)): document it and teach this test to read it",
			file, name, call.Args[0])
		return true
	})
	return out
}

// TestOpenAPIOperations checks each operation's x-required-role and that
// its path parameters are declared.
func TestOpenAPIOperations(t *testing.T) {
	s := loadSpec(t)
	roles := []string{"none", "viewer", "operator", "admin"}
	for _, o := range s.operations(t) {
		name := o.pattern()
		role, ok := o.op["x-required-role"].(string)
		switch {
		case !ok:
			t.Errorf("%s: %s has no x-required-role", openAPIFile, name)
		case !slices.Contains(roles, role):
			t.Errorf("%s: %s: x-required-role %q is not one of %s", openAPIFile, name, role, strings.Join(roles, ", "))
		}
		security, hasSecurity := o.op["security"].([]any)
		public := hasSecurity && len(security) == 0
		if (role == "none") != public {
			t.Errorf("%s: %s: x-required-role %q but security %v (want security: [] exactly when the role is none)", openAPIFile, name, role, o.op["security"])
		}
		responses, _ := o.op["responses"].(map[string]any)
		if len(responses) == 0 {
			t.Errorf("%s: %s has no responses", openAPIFile, name)
		}
		if role != "none" {
			if _, ok := responses["401"]; !ok {
				t.Errorf("%s: %s needs a token but documents no 401 response", openAPIFile, name)
			}
		}
		_, has403 := responses["403"]
		if need := role == "operator" || role == "admin"; need != has403 {
			t.Errorf("%s: %s: x-required-role %q, 403 response documented: %v (want it exactly for operator and admin)", openAPIFile, name, role, has403)
		}

		declared := map[string]bool{}
		params, _ := o.op["parameters"].([]any)
		for _, p := range params {
			pm, _ := p.(map[string]any)
			if ref, ok := pm["$ref"].(string); ok {
				r, _ := s.resolve(ref)
				pm, _ = r.(map[string]any)
			}
			if pm["in"] == "path" {
				declared[fmt.Sprint(pm["name"])] = true
			}
		}
		for _, m := range pathParam.FindAllString(o.path, -1) {
			if p := strings.Trim(m, "{}"); !declared[p] {
				t.Errorf("%s: %s: path parameter %q is not declared in parameters", openAPIFile, name, p)
			}
		}
	}
}

// TestOpenAPIRefs checks that every $ref points into components and
// resolves (schemas, parameters, responses).
func TestOpenAPIRefs(t *testing.T) {
	s := loadSpec(t)
	schemas, _ := s.resolve("#/components/schemas")
	if m, _ := schemas.(map[string]any); len(m) == 0 {
		t.Fatalf("%s: no components/schemas", openAPIFile)
	}
	n := 0
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(v) {
				if k == "$ref" {
					n++
					ref, _ := v[k].(string)
					if !regexp.MustCompile(`^#/components/(schemas|parameters|responses)/[A-Za-z0-9_.-]+$`).MatchString(ref) {
						t.Errorf("%s: %s: $ref %q is not a #/components/{schemas,parameters,responses}/NAME reference", openAPIFile, where, ref)
					} else if _, ok := s.resolve(ref); !ok {
						t.Errorf("%s: %s: $ref %q does not resolve", openAPIFile, where, ref)
					}
					continue
				}
				walk(where+"/"+k, v[k])
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s/%d", where, i), x)
			}
		}
	}
	walk("#", map[string]any(s))
	if n == 0 {
		t.Fatalf("%s: no $ref at all", openAPIFile)
	}
}

// TestOpenAPIPurchaseOrderBody checks that the purchase order body names
// the canonical JSON Schema, and that the file is there.
func TestOpenAPIPurchaseOrderBody(t *testing.T) {
	const schemaFile = "mapping/schemas/purchase-order.v1.json"
	if _, err := os.Stat(filepath.Join("../..", schemaFile)); err != nil {
		t.Fatal(err)
	}
	s := loadSpec(t)
	ref, ok := s.resolve("#/paths/~1api~1v1~1partners~1{id}~1purchase-orders/post/requestBody/content/application~1json/schema/$ref")
	if !ok {
		t.Fatalf("%s: POST /api/v1/partners/{id}/purchase-orders has no application/json schema $ref", openAPIFile)
	}
	schema, _ := s.resolve(ref.(string))
	desc, _ := schema.(map[string]any)["description"].(string)
	if !strings.Contains(desc, "../"+schemaFile) {
		t.Errorf("%s: %s: the description does not reference ../%s", openAPIFile, ref, schemaFile)
	}
}

// TestOpenAPISchemas checks the schemas of the named JSON shapes against
// the Go types' json tags: the same properties, and required exactly when
// not omitempty.
func TestOpenAPISchemas(t *testing.T) {
	s := loadSpec(t)
	for name, v := range map[string]any{
		"Error":        apiError{},
		"Work":         work{},
		"File":         fileJSON{},
		"Ack":          ackJSON{},
		"Interchange":  interchangeJSON{},
		"Document":     documentJSON{},
		"Event":        eventJSON{},
		"ERPResponse":  erpJSON{},
		"Run":          runJSON{},
		"Poll":         pollJSON{},
		"Partner":      partnerJSON{},
		"DocumentPage": pageJSON[documentJSON]{},
		"FilePage":     pageJSON[fileJSON]{},
	} {
		wantProps, wantReq := jsonFields(reflect.TypeOf(v))
		gotProps, gotReq := map[string]bool{}, map[string]bool{}
		if !s.schemaFields("#/components/schemas/"+name, gotProps, gotReq) {
			t.Errorf("%s: components/schemas/%s is missing", openAPIFile, name)
			continue
		}
		for _, p := range sortedKeys(wantProps) {
			switch {
			case !gotProps[p]:
				t.Errorf("%s: schema %s lacks the property %q of %T", openAPIFile, name, p, v)
			case wantReq[p] && !gotReq[p]:
				t.Errorf("%s: schema %s: %q is always present in %T, so it should be required", openAPIFile, name, p, v)
			case !wantReq[p] && gotReq[p]:
				t.Errorf("%s: schema %s: %q is omitempty in %T, so it should not be required", openAPIFile, name, p, v)
			}
		}
		for _, p := range sortedKeys(gotProps) {
			if !wantProps[p] {
				t.Errorf("%s: schema %s has the property %q, which %T does not have", openAPIFile, name, p, v)
			}
		}
	}
}

// schemaFields collects the properties and required names of a schema,
// through $ref and allOf.
func (s spec) schemaFields(ref string, props, req map[string]bool) bool {
	v, ok := s.resolve(ref)
	m, _ := v.(map[string]any)
	if !ok || m == nil {
		return false
	}
	var collect func(m map[string]any) bool
	collect = func(m map[string]any) bool {
		if r, ok := m["$ref"].(string); ok {
			return s.schemaFields(r, props, req)
		}
		ps, _ := m["properties"].(map[string]any)
		for k := range ps {
			props[k] = true
		}
		rs, _ := m["required"].([]any)
		for _, r := range rs {
			req[fmt.Sprint(r)] = true
		}
		all, _ := m["allOf"].([]any)
		for _, a := range all {
			am, _ := a.(map[string]any)
			if !collect(am) {
				return false
			}
		}
		return true
	}
	return collect(m)
}

// jsonFields lists the JSON properties encoding/json writes for a struct
// type, and those written always (not omitempty).
func jsonFields(t reflect.Type) (props, required map[string]bool) {
	props, required = map[string]bool{}, map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = true
			required[name] = !slices.Contains(strings.Split(opts, ","), "omitempty")
		}
	}
	walk(t)
	return props, required
}
