package mapping

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"

	"github.com/expr-lang/expr/vm"
	"github.com/shopspring/decimal"
)

// Document is a canonical JSON document.
type Document = map[string]any

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
	one    []item
	vm     vm.VM // reused: expr.Run would allocate a VM per call
}

type pathElem struct {
	key string
	idx int // index in a foreach list, -1 otherwise
}

func newRun(m *Map, env Env) *run {
	r := &run{m: m, env: env}
	r.vars = map[string]any{"file": map[string]any{"name": env.FileName}, "partner": env.Partner,
		"row": map[string]string{}, "doc": nil, "value": nil, "index": 0, "out": nil}
	return r
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
		return nil, nil, fmt.Errorf("%s: not an inbound X12 mapping", m.File)
	}
	r := newRun(m, env)
	r.root = item{node: tree}
	return r.finish(r.object(m.fields, r.root, 0))
}

func (r *run) finish(doc Document) (Document, []string, error) {
	r.runChecks(doc)
	if len(r.errs) == 0 && r.m.Target.Schema != "" {
		if err := ValidateDocument(r.m.Target.Schema, doc); err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: output does not satisfy %s: %w", r.m.File, r.m.Target.Schema, err))
		}
	}
	if len(r.errs) > 0 {
		return doc, r.warns, &DocError{Errs: r.errs}
	}
	return doc, r.warns, nil
}

func (r *run) object(fields []*field, ctx item, index int) Document {
	out := make(Document, len(fields))
	for _, f := range fields {
		r.path = append(r.path, pathElem{key: f.name, idx: -1})
		r.field(f, ctx, index, out)
		r.path = r.path[:len(r.path)-1]
	}
	return out
}

// setLets evaluates a field's let: names in its context and puts them in
// the expression environment for the field and everything nested in it;
// the returned function restores the outer values.
func (r *run) setLets(lets []letVar, ctx item) func() {
	saved := make([]any, len(lets))
	for i, l := range lets {
		saved[i] = r.vars[l.name]
		var v any
		if l.sel != nil {
			items := l.sel.eval(&r.ev, r.root, ctx, r.one[:0])
			r.one = items
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
func (r *run) runExpr(p *vm.Program, value any, index int, out Document) (any, error) {
	r.vars["value"], r.vars["index"], r.vars["out"] = value, index, out
	return r.vm.Run(p, r.vars)
}

func (r *run) field(f *field, ctx item, index int, out Document) {
	if len(f.lets) > 0 {
		defer r.setLets(f.lets, ctx)()
	}
	if f.when != nil {
		ok, err := r.runExpr(f.when, nil, index, out)
		if err != nil {
			r.fail(f, "when: %v", err)
			return
		}
		if b, _ := ok.(bool); !b {
			return
		}
	}
	if f.object != nil {
		r.structure(f, ctx, index, out)
		return
	}
	raw, found, src := r.raw(f, ctx)
	if r.m.trim {
		raw = strings.TrimSpace(raw)
	}
	if raw == "" && f.def != nil {
		raw, found = *f.def, true
	}
	var val any
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
		ev := val
		if d, ok := ev.(json.Number); ok {
			ev, _ = d.Float64()
		}
		v, err := r.runExpr(f.program, ev, index, out)
		if err != nil {
			r.fail(f, "expr: %v", err)
			return
		}
		val = v
	}
	if val == nil || val == "" {
		if f.required {
			if src != "" && !found {
				r.fail(f, "required (%s matched nothing)", src)
			} else {
				r.fail(f, "required (empty)")
			}
		}
		if r.m.omitNull || val == nil {
			return
		}
	}
	out[f.name] = val
}

// raw reads the field's source value as text.
func (r *run) raw(f *field, ctx item) (string, bool, string) {
	switch {
	case f.konst != nil:
		return *f.konst, true, ""
	case f.from != nil && f.from.simple && f.pair == "":
		v, ok := f.from.first(r.root, ctx)
		return v, ok, f.src
	case f.from != nil:
		items := f.from.eval(&r.ev, r.root, ctx, r.one[:0])
		r.one = items
		if len(items) == 0 {
			return "", false, f.src
		}
		it := items[0]
		if f.pair != "" {
			v := pairValue(it.seg, f.pair)
			return v, v != "", f.src + " pair " + f.pair
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
func pairValue(seg *edi.Segment, qual string) string {
	if seg == nil {
		return ""
	}
	start, ok := pairStart[seg.TagString()]
	if !ok || start == 0 {
		start = 1
	}
	for i := start; i+1 <= seg.Len(); i += 2 {
		if string(seg.Element(i)) == qual {
			return string(seg.Element(i + 1))
		}
	}
	return ""
}

// structure maps object, context and foreach fields.
func (r *run) structure(f *field, ctx item, index int, out Document) {
	top := len(r.path) - 1
	switch {
	case f.rows || f.foreach != nil:
		var list []any
		if f.rows {
			saved := r.row
			for i, row := range r.rows {
				r.setRow(row)
				r.path[top].idx = i
				if !r.keep(f, ctx, i, out) {
					continue
				}
				list = append(list, r.object(f.object, ctx, len(list)))
			}
			r.row = saved
		} else {
			items := f.foreach.eval(&r.ev, r.root, ctx, nil)
			for i, it := range items {
				r.path[top].idx = i
				if !r.keep(f, it, i, out) {
					continue
				}
				list = append(list, r.object(f.object, it, len(list)))
			}
		}
		r.path[top].idx = -1
		if len(list) == 0 {
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
			list = []any{}
		}
		out[f.name] = list
	case f.context != nil:
		items := f.context.eval(&r.ev, r.root, ctx, r.one[:0])
		r.one = items
		if len(items) == 0 {
			if f.required {
				r.fail(f, "required (%s matched nothing)", f.context.src)
			}
			return
		}
		out[f.name] = r.object(f.object, items[0], index)
	default:
		obj := r.object(f.object, ctx, index)
		if len(obj) == 0 && r.m.omitNull {
			if f.required {
				r.fail(f, "required (every field is empty)")
			}
			return
		}
		out[f.name] = obj
	}
}

func (r *run) keep(f *field, it item, i int, out Document) bool {
	if f.where == nil {
		return true
	}
	v, err := r.runExpr(f.where, nil, i, out)
	if err != nil {
		r.fail(f, "where: %v", err)
		return false
	}
	b, _ := v.(bool)
	return b
}

func (r *run) runChecks(doc Document) {
	r.vars["doc"] = doc
	for _, ck := range r.m.checks {
		restore := r.setLets(ck.lets, r.root)
		v, err := r.runExpr(ck.program, nil, 0, doc)
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

func (r *run) convert(f *field, ctx item, raw string) (any, error) {
	switch f.typ {
	case "string":
		return raw, nil
	case "int":
		n, err := strconv.ParseInt(strings.ReplaceAll(raw, ",", ""), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", raw)
		}
		return n, nil
	case "decimal":
		text := raw
		if f.scale > 0 || !plainNumber(raw) {
			d, err := decimal.NewFromString(strings.ReplaceAll(raw, ",", ""))
			if err != nil {
				return nil, fmt.Errorf("%q is not a decimal number", raw)
			}
			text = d.Shift(int32(-f.scale)).String()
		}
		// A float64 when it holds the value exactly (expressions can do
		// arithmetic with it, out.quantity * out.unitPrice); the exact
		// decimal text otherwise. Up to 15 significant digits a decimal
		// always survives the round trip through float64.
		if fl, err := strconv.ParseFloat(text, 64); err == nil && (significantDigits(text) <= 15 || sameDecimal(strconv.FormatFloat(fl, 'f', -1, 64), text)) {
			return fl, nil
		}
		return json.Number(text), nil
	case "date":
		t, err := parseDate(raw, f.format)
		if err != nil {
			return nil, err
		}
		return t.Format("2006-01-02"), nil
	case "time":
		t, err := parseTime(raw)
		if err != nil {
			return nil, err
		}
		if len(raw) == 4 {
			return t.Format("15:04"), nil
		}
		return t.Format("15:04:05"), nil
	case "datetime":
		d, err := parseDate(raw, f.format)
		if err != nil {
			return nil, err
		}
		tm := ""
		if f.timeFrom != nil {
			if items := f.timeFrom.eval(&r.ev, r.root, ctx, nil); len(items) > 0 {
				tm = items[0].text()
			}
		} else if f.timeCol != "" {
			tm, _ = r.cell(f.timeCol)
		}
		var clock time.Time
		if tm != "" {
			if clock, err = parseTime(tm); err != nil {
				return nil, err
			}
		}
		t := time.Date(d.Year(), d.Month(), d.Day(), clock.Hour(), clock.Minute(), clock.Second(), 0, f.tz)
		return t.Format(time.RFC3339), nil
	case "bool":
		tv := f.trueValues
		if tv == nil {
			tv = []string{"Y", "YES", "TRUE", "T", "1"}
		}
		return slices.ContainsFunc(tv, func(s string) bool { return strings.EqualFold(s, raw) }), nil
	}
	return raw, nil
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
