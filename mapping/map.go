// Package mapping turns X12 loop trees and CSV files into canonical JSON
// documents, and canonical purchase orders into X12 850, through YAML
// mapping specs (edigw-map/v1) compiled once at load.
package mapping

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edigw/edigw/edi/spec"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// SpecVersion is the mapping spec format this package reads.
const SpecVersion = "edigw-map/v1"

// Source says what a mapping reads.
type Source struct {
	Format      string // x12, csv or json
	Version     string // X12 version family ("004010", "005010")
	Transaction string // X12 set ("856")
	// CSV options.
	Delimiter rune
	Encoding  string // utf-8 (default) or windows-1252
	Schema    string // json: the canonical schema the input must satisfy
}

// Target says what a mapping writes.
type Target struct {
	Format      string // json (canonical document) or x12
	Schema      string // canonical schema name, e.g. "ship-notice.v1"
	Version     string // X12 version for outbound
	Transaction string // X12 set for outbound
}

// Test is one sample in a mapping's tests: input → expected JSON, or an
// expected error (a substring).
type Test struct {
	Input       string // path, relative to the mapping file's folder
	Expect      string // path of the expected JSON (inbound) or X12 (outbound)
	ExpectError string
	Line        int
}

// Map is a compiled mapping spec. It is safe for concurrent use.
type Map struct {
	Name      string
	File      string
	Partner   string
	Direction string // inbound or outbound
	Source    Source
	Target    Target
	Tests     []Test

	set      *spec.Set // the X12 set the selectors were checked against
	tables   map[string]map[string]string
	trim     bool
	omitNull bool
	output   *shape // inbound
	checks   []*check
	hints    sizeHints
	runs     sync.Pool   // *run: scratch space of finished documents
	segments []*segEntry // outbound
	prelude  []string    // names defined for expressions
	columns  []column    // CSV columns read
}

// LoadOptions tune LoadFile.
type LoadOptions struct {
	// Set returns the (partner-overlaid) transaction-set spec a mapping's
	// selectors are checked against; default: the standard spec.
	Set func(version, transaction string) *spec.Set
}

// LoadFile loads and compiles a mapping spec with the standard X12 specs.
func LoadFile(path string) (*Map, error) { return Load(path, LoadOptions{}) }

// Load loads and compiles a mapping spec. Every problem is reported with
// the file and line; selectors naming segments, loops or elements that the
// transaction-set spec does not have fail here, not at run time.
func Load(path string, opt LoadOptions) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	root, err := parseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	c := &compiler{file: path, opt: opt}
	m := c.compile(root)
	if len(c.errs) > 0 {
		return nil, &LoadError{Errs: c.errs}
	}
	return m, nil
}

// LoadError holds every problem found in a mapping file.
type LoadError struct{ Errs []error }

func (e *LoadError) Error() string {
	s := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

type compiler struct {
	file string
	opt  LoadOptions
	errs []error
	m    *Map
}

func (c *compiler) errf(n *ynode, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.line
	}
	c.errs = append(c.errs, fmt.Errorf("%s:%d: %s", c.file, line, fmt.Sprintf(format, args...)))
}

// keys checks that n is a mapping with only the allowed keys.
func (c *compiler) keys(n *ynode, what string, allowed ...string) bool {
	if n == nil || n.kind != 'm' {
		c.errf(n, "%s must be a mapping", what)
		return false
	}
	ok := true
	for i, k := range n.keys {
		if !slices.Contains(allowed, k) {
			c.errf(n.vals[i], "%s: unknown key %q (allowed: %s)", what, k, strings.Join(allowed, ", "))
			ok = false
		}
	}
	return ok
}

func (c *compiler) str(n *ynode, what string) string {
	if n == nil {
		return ""
	}
	if n.kind != 's' {
		c.errf(n, "%s must be a string", what)
		return ""
	}
	return n.str
}

func (c *compiler) boolean(n *ynode, what string) bool {
	switch s := c.str(n, what); s {
	case "", "false", "no":
		return false
	case "true", "yes":
		return true
	default:
		c.errf(n, "%s: %q is not true or false", what, s)
	}
	return false
}

func (c *compiler) compile(root *ynode) *Map {
	m := &Map{File: c.file, trim: true, omitNull: true}
	c.m = m
	if !c.keys(root, "mapping spec", "mapping", "spec", "partner", "direction", "source", "target", "options", "tables", "output", "checks", "segments", "tests") {
		return m
	}
	m.Name = c.str(root.get("mapping"), "mapping")
	if v := c.str(root.get("spec"), "spec"); v != SpecVersion {
		c.errf(root.get("spec"), "spec: %q, want %q", v, SpecVersion)
	}
	m.Partner = c.str(root.get("partner"), "partner")
	m.Direction = c.str(root.get("direction"), "direction")
	if m.Direction != "inbound" && m.Direction != "outbound" {
		c.errf(root.get("direction"), "direction: %q is not inbound or outbound", m.Direction)
	}
	c.source(root.get("source"))
	c.target(root.get("target"))
	c.options(root.get("options"))
	c.tables(root.get("tables"))
	if m.Source.Format == "x12" && m.Source.Transaction != "" {
		m.set = c.setSpec(root.get("source"), m.Source.Version, m.Source.Transaction)
	}
	if m.Target.Format == "x12" && m.Target.Transaction != "" {
		m.set = c.setSpec(root.get("target"), m.Target.Version, m.Target.Transaction)
	}
	switch m.Direction {
	case "inbound":
		if root.get("segments") != nil {
			c.errf(root.get("segments"), "segments: only outbound mappings write X12 segments")
		}
		out := root.get("output")
		if out == nil {
			c.errf(root, "output: missing (what the canonical document is made of)")
		} else {
			m.output = newShape(c.fields(out, "", c.rootScope()))
		}
		c.checks(root.get("checks"))
	case "outbound":
		if root.get("output") != nil {
			c.errf(root.get("output"), "output: outbound mappings write segments, not output")
		}
		c.outbound(root.get("segments"))
	}
	c.tests(root.get("tests"))
	return m
}

func (c *compiler) setSpec(n *ynode, version, tx string) *spec.Set {
	fam := spec.Family(version)
	if fam == "" {
		c.errf(n, "version %q is not supported (004010 or 005010)", version)
		return nil
	}
	var s *spec.Set
	if c.opt.Set != nil {
		s = c.opt.Set(fam, tx)
	} else {
		s = spec.Default(fam).Set(tx)
	}
	if s == nil {
		c.errf(n, "transaction set %s is not defined in %s", tx, fam)
	}
	return s
}

func (c *compiler) source(n *ynode) {
	if !c.keys(n, "source", "format", "version", "transaction", "header", "delimiter", "encoding", "schema") {
		return
	}
	s := &c.m.Source
	s.Format = c.str(n.get("format"), "source.format")
	s.Version = c.str(n.get("version"), "source.version")
	s.Transaction = c.str(n.get("transaction"), "source.transaction")
	s.Schema = c.str(n.get("schema"), "source.schema")
	s.Encoding = c.str(n.get("encoding"), "source.encoding")
	s.Delimiter = ','
	switch s.Format {
	case "x12":
		if s.Version == "" || s.Transaction == "" {
			c.errf(n, "source: x12 needs version and transaction")
		}
	case "csv":
		if d := c.str(n.get("delimiter"), "source.delimiter"); d != "" {
			r := []rune(d)
			if d == `\t` {
				r = []rune{'\t'}
			}
			if len(r) != 1 {
				c.errf(n.get("delimiter"), "source.delimiter must be one character")
			} else {
				s.Delimiter = r[0]
			}
		}
		if h := n.get("header"); h != nil && !c.boolean(h, "source.header") {
			c.errf(h, "source.header: only CSV files with a header row are supported (columns are named by it)")
		}
		switch strings.ToLower(s.Encoding) {
		case "", "utf-8", "utf8", "windows-1252", "cp1252", "iso-8859-1", "latin1":
		default:
			c.errf(n.get("encoding"), "source.encoding: %q is not utf-8, windows-1252 or iso-8859-1", s.Encoding)
		}
	case "json":
		if s.Schema == "" {
			c.errf(n, "source: json needs the canonical schema of its input")
		}
	default:
		c.errf(n.get("format"), "source.format: %q is not x12, csv or json", s.Format)
	}
}

func (c *compiler) target(n *ynode) {
	if !c.keys(n, "target", "format", "schema", "version", "transaction") {
		return
	}
	t := &c.m.Target
	t.Format = c.str(n.get("format"), "target.format")
	t.Schema = strings.TrimSuffix(strings.TrimPrefix(c.str(n.get("schema"), "target.schema"), "schemas/"), ".json")
	t.Version = c.str(n.get("version"), "target.version")
	t.Transaction = c.str(n.get("transaction"), "target.transaction")
	if t.Format == "" && t.Schema != "" {
		t.Format = "json"
	}
	switch t.Format {
	case "json":
		if t.Schema == "" {
			c.errf(n, "target: json needs a canonical schema")
		} else if _, err := Schema(t.Schema); err != nil {
			c.errf(n.get("schema"), "target.schema: %v", err)
		}
	case "x12":
		if t.Version == "" || t.Transaction == "" {
			c.errf(n, "target: x12 needs version and transaction")
		}
	default:
		c.errf(n.get("format"), "target.format: %q is not json or x12", t.Format)
	}
}

func (c *compiler) options(n *ynode) {
	if n == nil {
		return
	}
	if !c.keys(n, "options", "trim", "omit_empty") {
		return
	}
	if t := n.get("trim"); t != nil {
		c.m.trim = c.boolean(t, "options.trim")
	}
	if o := n.get("omit_empty"); o != nil {
		c.m.omitNull = c.boolean(o, "options.omit_empty")
	}
}

func (c *compiler) tables(n *ynode) {
	c.m.tables = map[string]map[string]string{}
	if n == nil {
		return
	}
	if n.kind != 'm' {
		c.errf(n, "tables must be a mapping of tables")
		return
	}
	for i, name := range n.keys {
		t := n.vals[i]
		if t.kind != 'm' {
			c.errf(t, "tables.%s must be a mapping of code: value", name)
			continue
		}
		tab := map[string]string{}
		for j, k := range t.keys {
			tab[k] = c.str(t.vals[j], "tables."+name+"."+k)
		}
		c.m.tables[name] = tab
	}
}

// ---- expressions ----

// exprEnv holds the typed names every expression may use. Names whose
// type is only known at run time (value, let: names, the outbound input)
// are left out of expr's type checks and checked by checkNames instead.
func exprEnv() map[string]any {
	return map[string]any{
		"index": 0, "out": map[string]any{}, "row": map[string]string{},
		"file": map[string]any{"name": ""}, "partner": "", "doc": map[string]any{},
	}
}

func (c *compiler) lookupFn() expr.Option {
	tables := c.m.tables
	return expr.Function("lookup", func(params ...any) (any, error) {
		if len(params) < 2 {
			return nil, fmt.Errorf("lookup(table, key[, default])")
		}
		t, ok := tables[fmt.Sprint(params[0])]
		if !ok {
			return nil, fmt.Errorf("lookup: no table %q", params[0])
		}
		v, ok := t[fmt.Sprint(params[1])]
		if !ok {
			if len(params) > 2 {
				return params[2], nil
			}
			return nil, fmt.Errorf("lookup: %q not in table %q", params[1], params[0])
		}
		return v, nil
	})
}

// expr compiles an expression once; names it may use are the typed ones
// above, "value", the let: names in scope and the outbound input.
func (c *compiler) expr(n *ynode, what, src string, lets []string) *vm.Program {
	p, err := expr.Compile(src, expr.Env(exprEnv()), c.lookupFn(), expr.AllowUndefinedVariables(), expr.MaxNodes(10000))
	if err != nil {
		c.errf(n, "%s: expression %q: %v", what, src, firstLine(err.Error()))
		return nil
	}
	known := map[string]bool{"value": true, "lookup": true}
	for k := range exprEnv() {
		known[k] = true
	}
	for _, l := range append(lets, c.m.prelude...) {
		known[l] = true
	}
	if bad := unknownNames(p.Node(), known); len(bad) > 0 {
		c.errf(n, "%s: expression %q uses unknown name(s) %s", what, src, strings.Join(bad, ", "))
		return nil
	}
	return p
}

// nameCheck collects identifiers that are neither known nor declared by a
// let inside the expression.
type nameCheck struct {
	known map[string]bool
	bad   []string
}

func (v *nameCheck) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.VariableDeclaratorNode:
		v.known[n.Name] = true
	case *ast.IdentifierNode:
		if !v.known[n.Value] && !slices.Contains(v.bad, n.Value) {
			v.bad = append(v.bad, n.Value)
		}
	}
}

func unknownNames(root ast.Node, known map[string]bool) []string {
	v := &nameCheck{known: known}
	ast.Walk(&root, v)
	return v.bad
}

// readsName reports whether a compiled expression reads any of names (or
// the whole environment, $env), so that a run converts the document to
// maps only for the expressions that read it.
func readsName(p *vm.Program, names ...string) bool {
	if p == nil {
		return false
	}
	return ast.Find(p.Node(), func(n ast.Node) bool {
		id, ok := n.(*ast.IdentifierNode)
		return ok && (id.Value == "$env" || slices.Contains(names, id.Value))
	}) != nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// ---- tests ----

func (c *compiler) tests(n *ynode) {
	if n == nil {
		return
	}
	if n.kind != 'l' {
		c.errf(n, "tests must be a list")
		return
	}
	dir := filepath.Dir(c.file)
	for _, t := range n.vals {
		if !c.keys(t, "test", "input", "expect", "expect_error") {
			continue
		}
		tc := Test{Input: c.str(t.get("input"), "tests.input"), Expect: c.str(t.get("expect"), "tests.expect"),
			ExpectError: c.str(t.get("expect_error"), "tests.expect_error"), Line: t.line}
		if tc.Input == "" || (tc.Expect == "") == (tc.ExpectError == "") {
			c.errf(t, "a test needs input and exactly one of expect or expect_error")
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, tc.Input)); err != nil {
			c.errf(t.get("input"), "tests.input: %v", err)
		}
		c.m.Tests = append(c.m.Tests, tc)
	}
}

// ---- small helpers ----

func parseScale(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 9 {
		return 0, fmt.Errorf("scale %q must be 0-9", s)
	}
	return n, nil
}

func loadTZ(s string) (*time.Location, error) {
	if s == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(s)
}
