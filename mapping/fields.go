package mapping

import (
	"fmt"
	"strings"
	"time"

	"github.com/edigw/edigw/edi/spec"
	"github.com/expr-lang/expr/vm"
)

// field is one compiled output key of an inbound mapping.
type field struct {
	name string
	key  []byte // name as a JSON key, escaped, with its colon
	path string // for messages: orders[].cartons[].sscc
	line int

	// where the value comes from (at most one)
	from    *selector
	col     string
	konst   *string
	program *vm.Program
	src     string // the from/col text, for messages
	pair    string // LIN/PO1/IT1 product id pair by qualifier
	pairSrc string // src and pair, for messages

	// usesOut: an expression of the field (expr, when, where) reads out,
	// which is then made a map for it.
	usesOut bool

	// structure
	object  *shape
	context *selector // object: evaluate inside this loop/segment
	foreach *selector
	rows    bool // foreach: rows (CSV)
	where   *vm.Program
	lets    []letVar

	// conversion
	typ        string // string, int, decimal, date, datetime, time, bool
	format     string // date layout in CCYY/YY/MM/DD tokens
	timeFrom   *selector
	timeCol    string
	tz         *time.Location
	scale      int
	lookup     string
	def        *string
	required   bool
	when       *vm.Program
	trueValues []string
}

type letVar struct {
	name string
	sel  *selector
	col  string
}

// scope is where a field is compiled: in an X12 loop/segment, or in a CSV
// file or row.
type scope struct {
	x12  *sctx
	csv  bool
	row  bool
	lets []string
}

func (c *compiler) rootScope() scope {
	switch c.m.Source.Format {
	case "x12":
		if c.m.set != nil {
			return scope{x12: &sctx{set: c.m.set, loops: []*spec.Loop{c.m.set.Root}}}
		}
	case "csv":
		return scope{csv: true}
	}
	return scope{}
}

var fieldKeys = []string{"from", "col", "const", "expr", "pair", "object", "context", "foreach", "where", "as", "let",
	"type", "format", "time_from", "time_col", "tz", "scale", "lookup", "default", "required", "when", "true_values"}

func (c *compiler) fields(n *ynode, prefix string, sc scope) []*field {
	if n.kind != 'm' {
		c.errf(n, "%s: must be a mapping of output keys", strings.TrimSuffix(prefix, "."))
		return nil
	}
	var out []*field
	for i, k := range n.keys {
		if f := c.field(k, n.vals[i], prefix+k, sc); f != nil {
			out = append(out, f)
		}
	}
	return out
}

// selector compiles a selector and checks it against the spec at sc.
func (c *compiler) selector(n *ynode, path, src string, sc scope) *selector {
	if sc.x12 == nil {
		c.errf(n, "%s: selector %q needs an X12 source (use col: for CSV)", path, src)
		return nil
	}
	s, err := parseSelector(src)
	if err == nil {
		err = s.check(sc.x12.set, *sc.x12)
	}
	if err != nil {
		c.errf(n, "%s: %v", path, err)
		return nil
	}
	return s
}

// after returns the spec context a selector leads to (for nested fields).
func (c *compiler) after(s *selector, sc scope) scope {
	if s == nil || sc.x12 == nil {
		return sc
	}
	cur := *sc.x12
	if s.root {
		cur = sctx{set: cur.set, loops: []*spec.Loop{cur.set.Root}}
	}
	for i := range s.steps {
		st := &s.steps[i]
		switch st.kind {
		case stepDescend:
			cur = sctx{set: cur.set, loops: allLoops(cur.set.Root, nil), any: true}
		case stepElement:
			cur = sctx{set: cur.set}
		default:
			cur, _ = cur.resolve(st)
		}
	}
	sc.x12 = &cur
	return sc
}

func (c *compiler) field(name string, n *ynode, path string, sc scope) *field {
	f := &field{name: name, path: path, line: n.line, typ: "string", tz: time.UTC}
	if n.kind == 's' { // a bare string means from (or col in CSV)
		if sc.csv {
			f.col = n.str
			c.column(f.col, n.line)
		} else {
			f.from = c.selector(n, path, n.str, sc)
		}
		f.src = n.str
		return f
	}
	if isNested(n) { // a plain mapping of output keys is a nested object
		f.object = newShape(c.fields(n, path+".", sc))
		return f
	}
	if !c.keys(n, path, fieldKeys...) {
		return nil
	}
	get := func(k string) string { return c.str(n.get(k), path+"."+k) }

	// let: names for expressions, evaluated in this field's context
	inner := sc
	if l := n.get("let"); l != nil {
		if l.kind != 'm' {
			c.errf(l, "%s.let must be a mapping of name: selector", path)
		} else {
			for i, k := range l.keys {
				lv := letVar{name: k}
				src := c.str(l.vals[i], path+".let."+k)
				if sc.csv {
					lv.col = src
					c.column(src, l.vals[i].line)
				} else {
					lv.sel = c.selector(l.vals[i], path+".let."+k, src, sc)
				}
				f.lets = append(f.lets, lv)
				inner.lets = append(inner.lets, k)
			}
		}
	}

	sources := 0
	if s := n.get("from"); s != nil {
		f.src = get("from")
		f.from = c.selector(s, path, f.src, sc)
		sources++
	}
	if s := n.get("col"); s != nil {
		if !sc.csv {
			c.errf(s, "%s: col: needs a CSV source", path)
		}
		f.col = get("col")
		c.column(f.col, s.line)
		f.src = f.col
		sources++
	}
	if s := n.get("const"); s != nil {
		v := get("const")
		f.konst = &v
		sources++
	}
	if e := n.get("expr"); e != nil {
		f.program = c.expr(e, path, get("expr"), inner.lets)
	}
	if sources > 1 {
		c.errf(n, "%s: use one of from, col and const", path)
	}
	f.pair = get("pair")
	if f.pair != "" && f.from == nil {
		c.errf(n, "%s: pair needs from: a segment (LIN, PO1, IT1, SLN ...)", path)
	}
	if f.pair != "" {
		f.pairSrc = f.src + " pair " + f.pair
	}

	// structure
	if s := n.get("context"); s != nil {
		f.context = c.selector(s, path, get("context"), sc)
	}
	if s := n.get("foreach"); s != nil {
		src := get("foreach")
		if sc.csv && src == "rows" {
			f.rows = true
		} else {
			f.foreach = c.selector(s, path, src, sc)
		}
		if n.get("object") == nil {
			c.errf(n, "%s: foreach needs object:", path)
		}
	}
	if w := n.get("where"); w != nil {
		if n.get("foreach") == nil {
			c.errf(w, "%s: where filters a foreach", path)
		}
		f.where = c.expr(w, path+".where", get("where"), inner.lets)
	}
	if as := n.get("as"); as != nil {
		c.errf(as, "%s: as is for outbound segments; inbound foreach items are the context of object", path)
	}
	if o := n.get("object"); o != nil {
		if sources > 0 || f.program != nil {
			c.errf(o, "%s: object cannot be combined with from, col, const or expr", path)
		}
		osc := inner
		switch {
		case f.rows:
			osc.row = true
		case f.foreach != nil:
			osc = c.after(f.foreach, osc)
		case f.context != nil:
			osc = c.after(f.context, osc)
		}
		f.object = newShape(c.fields(o, path+nestedPrefix(f), osc))
	} else if f.context != nil || f.foreach != nil || f.rows {
		c.errf(n, "%s: context and foreach need object:", path)
	}
	if sources == 0 && f.program == nil && n.get("object") == nil {
		c.errf(n, "%s: needs from, col, const, expr or object", path)
	}

	// conversion
	if t := n.get("type"); t != nil {
		f.typ = get("type")
		switch f.typ {
		case "string", "int", "decimal", "date", "datetime", "time", "bool":
		default:
			c.errf(t, "%s.type: %q is not string, int, decimal, date, datetime, time or bool", path, f.typ)
		}
	}
	f.format = get("format")
	if f.format != "" {
		if _, err := dateLayout(f.format); err != nil {
			c.errf(n.get("format"), "%s.format: %v", path, err)
		}
	}
	if s := n.get("time_from"); s != nil {
		f.timeFrom = c.selector(s, path+".time_from", get("time_from"), sc)
	}
	f.timeCol = get("time_col")
	if f.timeCol != "" {
		c.column(f.timeCol, n.get("time_col").line)
	}
	if tz := get("tz"); tz != "" {
		loc, err := loadTZ(tz)
		if err != nil {
			c.errf(n.get("tz"), "%s.tz: %v", path, err)
		} else {
			f.tz = loc
		}
	}
	if s := get("scale"); s != "" {
		v, err := parseScale(s)
		if err != nil {
			c.errf(n.get("scale"), "%s: %v", path, err)
		}
		f.scale = v
	}
	f.lookup = get("lookup")
	if f.lookup != "" {
		if _, ok := c.m.tables[f.lookup]; !ok {
			c.errf(n.get("lookup"), "%s.lookup: no table %q in tables:", path, f.lookup)
		}
	}
	if d := n.get("default"); d != nil {
		v := get("default")
		f.def = &v
	}
	f.required = c.boolean(n.get("required"), path+".required")
	if w := n.get("when"); w != nil {
		f.when = c.expr(w, path+".when", get("when"), inner.lets)
	}
	if tv := n.get("true_values"); tv != nil {
		if tv.kind != 'l' {
			c.errf(tv, "%s.true_values must be a list", path)
		}
		for _, v := range tv.vals {
			f.trueValues = append(f.trueValues, c.str(v, path+".true_values"))
		}
	}
	f.usesOut = readsName(f.program, "out") || readsName(f.when, "out") || readsName(f.where, "out")
	return f
}

// isNested reports whether a field's mapping holds output keys rather than
// field keys (carrier: {scac: ..., name: ...}).
func isNested(n *ynode) bool {
	if n.kind != 'm' {
		return false
	}
	for _, k := range n.keys {
		for _, fk := range fieldKeys {
			if k == fk {
				return false
			}
		}
	}
	return true
}

// nestedPrefix is the separator between a field and its nested keys in
// messages: "orders[]." for foreach, "shipTo." for an object.
func nestedPrefix(f *field) string {
	if f.foreach != nil || f.rows {
		return "[]."
	}
	return "."
}

// column records a CSV column the mapping reads, checked against each
// file's header before any row is mapped.
func (c *compiler) column(name string, line int) {
	for _, col := range c.m.columns {
		if col.name == name {
			return
		}
	}
	c.m.columns = append(c.m.columns, column{name: name, line: line})
}

type column struct {
	name string
	line int
}

// ---- checks ----

type check struct {
	name     string
	line     int
	lets     []letVar
	program  *vm.Program
	severity string
	readsDoc bool // the expression reads doc or out, the document as maps
}

func (c *compiler) checks(n *ynode) {
	if n == nil {
		return
	}
	if n.kind != 'l' {
		c.errf(n, "checks must be a list")
		return
	}
	sc := c.rootScope()
	for _, cn := range n.vals {
		if !c.keys(cn, "check", "name", "let", "expr", "severity") {
			continue
		}
		ck := &check{name: c.str(cn.get("name"), "checks.name"), line: cn.line, severity: "error"}
		if s := c.str(cn.get("severity"), "checks.severity"); s != "" {
			ck.severity = s
		}
		if ck.severity != "error" && ck.severity != "warn" {
			c.errf(cn.get("severity"), "checks.severity: %q is not error or warn", ck.severity)
		}
		var names []string
		if l := cn.get("let"); l != nil && l.kind == 'm' {
			for i, k := range l.keys {
				src := c.str(l.vals[i], "checks.let."+k)
				lv := letVar{name: k}
				if sc.csv {
					lv.col = src
				} else {
					lv.sel = c.selector(l.vals[i], "checks."+ck.name+".let."+k, src, sc)
				}
				ck.lets = append(ck.lets, lv)
				names = append(names, k)
			}
		}
		ck.program = c.expr(cn.get("expr"), "checks."+ck.name, c.str(cn.get("expr"), "checks.expr"), names)
		ck.readsDoc = readsName(ck.program, "doc", "out")
		c.m.checks = append(c.m.checks, ck)
	}
}

func (f *field) String() string { return fmt.Sprintf("%s (line %d)", f.path, f.line) }
