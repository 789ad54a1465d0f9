package mapping

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"

	"github.com/expr-lang/expr/vm"
	"github.com/shopspring/decimal"
)

// Env is what a mapping knows about the file it maps.
type Env struct {
	FileName string
	Partner  string
}

// FieldError is one mapping failure, named by mapping file and line, field
// path and selector.
type FieldError struct {
	File  string
	Line  int
	Field string // orders[0].cartons[1].sscc
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// DocError holds every failure of one document.
type DocError struct{ Errs []error }

func (e *DocError) Error() string {
	s := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// run is the state of one document being mapped.
type run struct {
	m      *Map
	env    Env
	root   item
	header map[string]int
	rows   [][]string
	row    []string
	errs   []error
	warns  []string
	ev     evaluator
	vars   map[string]any // expression environment, reused: see setLets
	path   []pathElem     // where the field being mapped is, for messages
	vm     vm.VM          // reused: expr.Run would allocate a VM per call
	doc    *tree          // the document being mapped
	items  []int          // the objects of the lists being mapped, nested lists' on top
}

// objRef is an object being mapped: its shape and first slot.
type objRef struct {
	sh  *shape
	off int
}

type pathElem struct {
	key string
	idx int // index in a foreach list, -1 otherwise
}

// newRun starts a document, with the scratch space a finished run of the
// mapping left (see release).
func newRun(m *Map, env Env) *run {
	r, _ := m.runs.Get().(*run)
	if r == nil {
		r = &run{m: m, vars: map[string]any{}}
	}
	r.env = env
	r.vars["file"], r.vars["partner"], r.vars["row"] = map[string]any{"name": env.FileName}, env.Partner, map[string]string{}
	r.vars["doc"], r.vars["value"], r.vars["index"], r.vars["out"] = nil, nil, 0, nil
	root := m.output
	if root == nil { // output: {}, or an outbound mapping given a CSV file
		root = &shape{}
	}
	r.doc = &tree{root: root, hints: &m.hints, vals: make([]value, 0, max(64, int(m.hints.vals.Load()))),
		text: make([]byte, 0, max(256, int(m.hints.text.Load())))}
	r.ev.doc = r.doc
	return r
}

// release hands the run's scratch space to the mapping's next document.
// What the document, its errors and warnings hold is the caller's now and is
// let go; so are the loop tree and values the scratch still points to.
func (r *run) release() {
	r.env, r.root, r.header, r.rows, r.row, r.errs, r.warns, r.doc = Env{}, item{}, nil, nil, nil, nil, nil, nil
	clear(r.vars)
	r.ev.clear()
	r.m.runs.Put(r)
}

func (r *run) pathString() string {
	var b strings.Builder
	for i, p := range r.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p.key)
		if p.idx >= 0 {
			b.WriteString("[" + strconv.Itoa(p.idx) + "]")
		}
	}
	return b.String()
}

func (r *run) fail(f *field, format string, args ...any) {
	r.errs = append(r.errs, &FieldError{File: r.m.File, Line: f.line, Field: r.pathString(), Msg: fmt.Sprintf(format, args...)})
}

// MapX12 maps one transaction set's loop tree to a canonical document. It
// returns the document, warnings from checks, and a *DocError listing every
// failure (the document is then incomplete and must not be delivered).
func (m *Map) MapX12(tree *edi.Node, env Env) (Document, []string, error) {
	if m.Source.Format != "x12" || m.Direction != "inbound" {
		return Document{}, nil, fmt.Errorf("%s: not an inbound X12 mapping", m.File)
	}
	r := newRun(m, env)
	r.root = item{node: tree}
	return r.finish()
}

// finish maps the output object, runs the checks and the schema check.
func (r *run) finish() (Document, []string, error) {
	r.object(r.doc.root, &r.root, 0)
	doc := Document{t: r.doc}
	r.runChecks(doc) // let: values are text too
	r.m.hints.vals.Store(int32(min(len(r.doc.vals), maxValsHint)))
	r.m.hints.text.Store(int32(min(len(r.doc.text), maxTextHint)))
	if len(r.errs) == 0 && r.m.Target.Schema != "" {
		if err := ValidateDocument(r.m.Target.Schema, doc); err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: output does not satisfy %s: %w", r.m.File, r.m.Target.Schema, err))
		}
	}
	warns, errs := r.warns, r.errs
	r.release()
	if len(errs) > 0 {
		return doc, warns, &DocError{Errs: errs}
	}
	return doc, warns, nil
}

// object maps fields into a new object's slots, laid out after every value
// mapped so far, and returns its first slot.
func (r *run) object(sh *shape, ctx *item, index int) int {
	// vals only grows, so the slots past its length are still zero: absent.
	off := len(r.doc.vals)
	r.doc.vals = slices.Grow(r.doc.vals, len(sh.fields))[:off+len(sh.fields)]
	obj := objRef{sh: sh, off: off}
	for i, f := range sh.fields {
		r.path = append(r.path, pathElem{key: f.name, idx: -1})
		r.field(f, ctx, index, obj, off+i)
		r.path = r.path[:len(r.path)-1]
	}
	return obj.off
}

// out is the object being mapped as expressions see it (out), for a field
// whose expressions read it.
func (r *run) out(f *field, obj objRef) any {
	if !f.usesOut {
		return nil
	}
	return r.doc.object(obj.sh, obj.off)
}

// setLets evaluates a field's let: names in its context and puts them in
// the expression environment for the field and everything nested in it;
// the returned function restores the outer values.
func (r *run) setLets(lets []letVar, ctx *item) func() {
	saved := make([]any, len(lets))
	for i, l := range lets {
		saved[i] = r.vars[l.name]
		var v any
		if l.sel != nil {
			items := l.sel.eval(&r.ev, r.root, *ctx, r.ev.one[:0])
			r.ev.one = items
			// One element value binds as a string; loops and segments always
			// bind as a list (so len() counts them), as do several values.
			switch {
			case len(items) == 0:
			case len(items) == 1 && items[0].isV:
				v = items[0].val
			default:
				vs := make([]any, len(items))
				for i, it := range items {
					vs[i] = it.text()
				}
				v = vs
			}
		} else if s, ok := r.cell(l.col); ok {
			v = s
		}
		r.vars[l.name] = v
	}
	return func() {
		for i, l := range lets {
			r.vars[l.name] = saved[i]
		}
	}
}

func (r *run) setRow(row []string) {
	r.row = row
	rm := make(map[string]string, len(r.header))
	for h, i := range r.header {
		if i < len(row) {
			rm[h] = row[i]
		}
	}
	r.vars["row"] = rm
}

func (r *run) cell(col string) (string, bool) {
	i, ok := r.header[col]
	if !ok || i >= len(r.row) {
		return "", ok
	}
	return r.row[i], true
}

// runExpr runs an expression with value, index and out set.
func (r *run) runExpr(p *vm.Program, value any, index int, out any) (any, error) {
	r.vars["value"], r.vars["index"], r.vars["out"] = value, index, out
	return r.vm.Run(p, r.vars)
}

// field maps one field of obj into its slot.
func (r *run) field(f *field, ctx *item, index int, obj objRef, slot int) {
	if len(f.lets) > 0 {
		defer r.setLets(f.lets, ctx)()
	}
	if f.when != nil {
		ok, err := r.runExpr(f.when, nil, index, r.out(f, obj))
		if err != nil {
			r.fail(f, "when: %v", err)
			return
		}
		if b, _ := ok.(bool); !b {
			return
		}
	}
	if f.object != nil {
		r.structure(f, ctx, index, obj, slot)
		return
	}
	raw, found, src := r.raw(f, ctx)
	if r.m.trim {
		raw = strings.TrimSpace(raw)
	}
	if raw == "" && f.def != nil {
		raw, found = *f.def, true
	}
	var val value
	if raw != "" {
		if f.lookup != "" {
			v, ok := r.m.tables[f.lookup][raw]
			switch {
			case ok:
				raw = v
			case f.def != nil:
				raw = *f.def
			default:
				r.fail(f, "%q is not in table %s (from %s)", raw, f.lookup, src)
				return
			}
		}
		v, err := r.convert(f, ctx, raw)
		if err != nil {
			r.fail(f, "%v (from %s)", err, src)
			return
		}
		val = v
	}
	if f.program != nil {
		v, err := r.runExpr(f.program, r.doc.scalar(&val), index, r.out(f, obj))
		if err != nil {
			r.fail(f, "expr: %v", err)
			return
		}
		val = r.result(v)
	}
	if val.empty() {
		if f.required {
			if src != "" && !found {
				r.fail(f, "required (%s matched nothing)", src)
			} else {
				r.fail(f, "required (empty)")
			}
		}
		if r.m.omitNull || val.kind == vAbsent {
			return
		}
	}
	r.doc.vals[slot] = val
}

// result stores what an expression returned: a string as a string, nil as
// nothing, anything else as it is.
func (r *run) result(v any) value {
	switch x := v.(type) {
	case nil:
		return value{}
	case string:
		return r.doc.textValue(vString, x)
	}
	r.doc.anys = append(r.doc.anys, v)
	return placed(vAny, len(r.doc.anys)-1, 0)
}

// raw reads the field's source value as text.
func (r *run) raw(f *field, ctx *item) (string, bool, string) {
	switch {
	case f.konst != nil:
		return *f.konst, true, ""
	case f.from != nil && f.from.simple && f.pair == "":
		v, ok := f.from.firstValue(&r.root, ctx)
		return r.ev.str(v), ok, f.src
	case f.from != nil:
		it, ok := f.from.first(&r.ev, &r.root, ctx)
		if !ok {
			return "", false, f.src
		}
		if f.pair != "" {
			v := r.ev.str(pairValue(it.seg, f.pair))
			return v, v != "", f.pairSrc
		}
		return it.text(), true, f.src
	case f.col != "":
		v, ok := r.cell(f.col) // a missing column was reported once, before the rows
		return v, ok && v != "", "column " + strconv.Quote(f.col)
	}
	return "", false, ""
}

func (r *run) headerNames() string {
	names := make([]string, len(r.header))
	for h, i := range r.header {
		names[i] = strconv.Quote(h)
	}
	return strings.Join(names, ", ")
}

// pairStart is the first qualifier position of the product-ID pairs of
// segments that carry them (qualifier, value, qualifier, value ...).
var pairStart = map[string]int{"LIN": 2, "PO1": 6, "IT1": 6, "SLN": 9, "PO4": 0, "SN1": 0, "CTP": 0, "ACK": 7, "PID": 0, "SAC": 0}

// pairValue returns the value paired with qualifier in a LIN/PO1/IT1/SLN/ACK
// segment, in whatever order the partner sent the pairs.
func pairValue(seg *edi.Segment, qual string) []byte {
	if seg == nil {
		return nil
	}
	start, ok := pairStart[string(seg.Tag())]
	if !ok || start == 0 {
		start = 1
	}
	for i := start; i+1 <= seg.Len(); i += 2 {
		if string(seg.Element(i)) == qual {
			return seg.Element(i + 1)
		}
	}
	return nil
}

// structure maps object, context and foreach fields into obj's slot.
func (r *run) structure(f *field, ctx *item, index int, obj objRef, slot int) {
	top := len(r.path) - 1
	switch {
	case f.rows || f.foreach != nil:
		// Each item is mapped, nested lists and all, before the next; the
		// items' objects wait on r.items and are laid out together at the
		// end, where the list's slot points.
		start := len(r.items)
		if f.rows {
			saved := r.row
			for i, row := range r.rows {
				r.setRow(row)
				r.path[top].idx = i
				if !r.keep(f, i, obj) {
					continue
				}
				off := r.object(f.object, ctx, len(r.items)-start)
				r.items = append(r.items, off)
			}
			r.row = saved
		} else {
			// The items wait on the evaluator's stack, where nested lists
			// push theirs above and pop them: they stay put, and are
			// passed by address without each escaping to the heap.
			base := len(r.ev.lists)
			r.ev.lists = f.foreach.eval(&r.ev, r.root, *ctx, r.ev.lists)
			items := r.ev.lists[base:]
			for i := range items {
				r.path[top].idx = i
				if !r.keep(f, i, obj) {
					continue
				}
				off := r.object(f.object, &items[i], len(r.items)-start)
				r.items = append(r.items, off)
			}
			r.ev.lists = r.ev.lists[:base]
		}
		r.path[top].idx = -1
		n := len(r.items) - start
		if n == 0 {
			if f.required {
				src := "rows"
				if f.foreach != nil {
					src = f.foreach.src
				}
				r.fail(f, "required (%s matched nothing)", src)
			}
			if r.m.omitNull {
				return
			}
		}
		list := placed(vList, len(r.doc.vals), n)
		for _, off := range r.items[start:] {
			r.doc.vals = append(r.doc.vals, placed(vObject, off, 0))
		}
		r.items = r.items[:start]
		r.doc.vals[slot] = list
	case f.context != nil:
		it, ok := f.context.first(&r.ev, &r.root, ctx)
		if !ok {
			if f.required {
				r.fail(f, "required (%s matched nothing)", f.context.src)
			}
			return
		}
		base := len(r.ev.lists) // on the stack, as a foreach item
		r.ev.lists = append(r.ev.lists, it)
		off := r.object(f.object, &r.ev.lists[base], index) // grows vals: not inline in the assignment below
		r.ev.lists = r.ev.lists[:base]
		r.doc.vals[slot] = placed(vObject, off, 0)
	default:
		off := r.object(f.object, ctx, index)
		if r.m.omitNull && r.doc.empty(f.object, off) {
			if f.required {
				r.fail(f, "required (every field is empty)")
			}
			return
		}
		r.doc.vals[slot] = placed(vObject, off, 0)
	}
}

func (r *run) keep(f *field, i int, obj objRef) bool {
	if f.where == nil {
		return true
	}
	v, err := r.runExpr(f.where, nil, i, r.out(f, obj))
	if err != nil {
		r.fail(f, "where: %v", err)
		return false
	}
	b, _ := v.(bool)
	return b
}

func (r *run) runChecks(doc Document) {
	var m map[string]any // the document as maps, made for the first check that reads it
	for _, ck := range r.m.checks {
		if ck.readsDoc && m == nil {
			m = doc.Map()
			r.vars["doc"] = m
		}
		var out any
		if ck.readsDoc {
			out = m
		}
		restore := r.setLets(ck.lets, &r.root)
		v, err := r.runExpr(ck.program, nil, 0, out)
		restore()
		ok, _ := v.(bool)
		if err == nil && ok {
			continue
		}
		msg := fmt.Sprintf("%s:%d: check %s failed", r.m.File, ck.line, ck.name)
		if err != nil {
			msg += ": " + err.Error()
		}
		if ck.severity == "warn" {
			r.warns = append(r.warns, msg)
		} else {
			r.errs = append(r.errs, fmt.Errorf("%s", msg))
		}
	}
}

// ---- conversions ----

func (r *run) convert(f *field, ctx *item, raw string) (value, error) {
	switch f.typ {
	case "string":
		return r.doc.textValue(vString, raw), nil
	case "int":
		n, err := strconv.ParseInt(strings.ReplaceAll(raw, ",", ""), 10, 64)
		if err != nil {
			return value{}, fmt.Errorf("%q is not an integer", raw)
		}
		return intValue(n), nil
	case "decimal":
		text := raw
		if f.scale > 0 || !plainNumber(raw) {
			d, err := decimal.NewFromString(strings.ReplaceAll(raw, ",", ""))
			if err != nil {
				return value{}, fmt.Errorf("%q is not a decimal number", raw)
			}
			text = d.Shift(int32(-f.scale)).String()
		}
		// A float64 when it holds the value exactly (expressions can do
		// arithmetic with it, out.quantity * out.unitPrice); the exact
		// decimal text otherwise. Up to 15 significant digits a decimal
		// always survives the round trip through float64. The usual 24 and
		// 12.5 are kept as their text, which is how Marshal writes them,
		// and parsed only when an expression or Map reads them.
		if jsonFloatText(text) {
			return r.doc.textValue(vFloatText, text), nil
		}
		if fl, err := strconv.ParseFloat(text, 64); err == nil && (significantDigits(text) <= 15 || sameDecimal(strconv.FormatFloat(fl, 'f', -1, 64), text)) {
			return floatValue(fl), nil
		}
		return r.doc.textValue(vNumber, text), nil
	case "date":
		t, err := parseDate(raw, f.format)
		if err != nil {
			return value{}, err
		}
		return r.doc.timeValue(t, "2006-01-02"), nil
	case "time":
		t, err := parseTime(raw)
		if err != nil {
			return value{}, err
		}
		if len(raw) == 4 {
			return r.doc.timeValue(t, "15:04"), nil
		}
		return r.doc.timeValue(t, "15:04:05"), nil
	case "datetime":
		d, err := parseDate(raw, f.format)
		if err != nil {
			return value{}, err
		}
		tm := ""
		if f.timeFrom != nil {
			if it, ok := f.timeFrom.first(&r.ev, &r.root, ctx); ok {
				tm = it.text()
			}
		} else if f.timeCol != "" {
			tm, _ = r.cell(f.timeCol)
		}
		var clock time.Time
		if tm != "" {
			if clock, err = parseTime(tm); err != nil {
				return value{}, err
			}
		}
		t := time.Date(d.Year(), d.Month(), d.Day(), clock.Hour(), clock.Minute(), clock.Second(), 0, f.tz)
		return r.doc.timeValue(t, time.RFC3339), nil
	case "bool":
		tv := f.trueValues
		if tv == nil {
			tv = []string{"Y", "YES", "TRUE", "T", "1"}
		}
		return boolValue(slices.ContainsFunc(tv, func(s string) bool { return strings.EqualFold(s, raw) })), nil
	}
	return r.doc.textValue(vString, raw), nil
}

// dateLayout turns a CCYY/YYYY/YY/MM/DD format into a Go layout.
func dateLayout(format string) (string, error) {
	r := strings.NewReplacer("CCYY", "2006", "YYYY", "2006", "YY", "06", "MM", "01", "DD", "02")
	l := r.Replace(format)
	if strings.ContainsAny(l, "ABCEFGHIJKLNOPQRSTUVWXYZ") {
		return "", fmt.Errorf("%q: use CCYY (or YYYY), YY, MM and DD", format)
	}
	return l, nil
}

func parseDate(raw, format string) (time.Time, error) {
	var layout string
	switch {
	case format != "":
		layout, _ = dateLayout(format)
	case len(raw) == 8:
		layout = "20060102"
	case len(raw) == 6:
		layout = "060102"
	default:
		return time.Time{}, fmt.Errorf("%q is not a date (CCYYMMDD or YYMMDD)", raw)
	}
	t, err := time.Parse(layout, raw)
	if err != nil {
		return t, fmt.Errorf("%q is not a date (%s)", raw, orDefault(format, "CCYYMMDD"))
	}
	return t, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func parseTime(raw string) (time.Time, error) {
	layouts := map[int]string{4: "1504", 6: "150405", 7: "150405", 8: "150405"}
	l, ok := layouts[len(raw)]
	if ok && len(raw) > 6 {
		raw = raw[:6] // decimal seconds are dropped
	}
	t, err := time.Parse(l, raw)
	if !ok || err != nil {
		return t, fmt.Errorf("%q is not a time (HHMM or HHMMSS)", raw)
	}
	return t, nil
}

// plainNumber reports whether s is already a JSON number with no leading
// zeros, sign or exponent to normalise (the common case: "12.50", "24").
func plainNumber(s string) bool {
	dot := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return s != "" && (s[0] != '0' || len(s) == 1 || s[1] == '.')
}

// jsonFloatText reports whether a decimal text is what encoding/json
// writes for the float64 it parses to, so that Marshal copies it instead of
// formatting the float: a plain number without trailing fractional zeros,
// of at most 15 significant digits (float64 keeps them, so the shortest
// text that parses back is these digits), in the range written without an
// exponent (0, or 1e-6 up to 1e21).
func jsonFloatText(s string) bool {
	if !plainNumber(s) || significantDigits(s) > 15 {
		return false
	}
	dot := strings.IndexByte(s, '.')
	switch {
	case dot < 0:
		return len(s) <= 21
	case s[len(s)-1] == '0' || dot > 21:
		return false
	case s[0] == '0': // 0.000001 at least
		frac := s[dot+1:]
		return len(frac)-len(strings.TrimLeft(frac, "0")) <= 5
	}
	return true
}

// sameDecimal compares two decimal texts ignoring trailing fractional zeros.
func sameDecimal(a, b string) bool {
	trim := func(s string) string {
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s
	}
	return trim(a) == trim(b)
}

// significantDigits counts the digits of a decimal text without leading zeros.
func significantDigits(s string) int {
	n, lead := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		if lead && c == '0' {
			continue
		}
		lead = false
		n++
	}
	return n
}
