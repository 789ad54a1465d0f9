package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/edi/spec"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// segEntry is one entry of an outbound mapping's segments: a segment with
// its element values, or a foreach over a list with nested entries.
type segEntry struct {
	line     int
	tag      string
	def      *spec.Segment
	elements []outElement
	when     *vm.Program
	foreach  *vm.Program
	as       string
	children []*segEntry
}

type outElement struct {
	pos     int
	key     string
	literal string
	program *vm.Program
	ref     *spec.ElementRef
}

// inputName is the name the outbound document has in expressions.
const inputName = "po"

func (c *compiler) outbound(n *ynode) {
	if c.m.Target.Format != "x12" {
		c.errf(n, "outbound mappings need target format x12")
	}
	if n == nil {
		c.errf(nil, "segments: missing")
		return
	}
	c.m.prelude = []string{inputName, "doc"}
	c.m.segments = c.segEntries(n, nil)
}

func (c *compiler) segEntries(n *ynode, names []string) []*segEntry {
	if n.kind != 'l' {
		c.errf(n, "segments must be a list")
		return nil
	}
	var tags map[string]bool
	if c.m.set != nil {
		tags = setTags(c.m.set)
	}
	var out []*segEntry
	for _, en := range n.vals {
		if en.kind != 'm' {
			c.errf(en, "a segments entry must be a mapping (SEG: {...} or foreach:)")
			continue
		}
		e := &segEntry{line: en.line}
		if fe := en.get("foreach"); fe != nil {
			c.keys(en, "foreach entry", "foreach", "as", "segments", "when")
			e.as = c.str(en.get("as"), "as")
			if e.as == "" {
				c.errf(en, "foreach needs as: (the name of each item)")
			}
			inner := append(append([]string(nil), names...), e.as, "index")
			e.foreach = c.expr(fe, "foreach", c.str(fe, "foreach"), names)
			if w := en.get("when"); w != nil {
				e.when = c.expr(w, "when", c.str(w, "when"), names)
			}
			if s := en.get("segments"); s != nil {
				e.children = c.segEntries(s, inner)
			} else {
				c.errf(en, "foreach needs segments:")
			}
			out = append(out, e)
			continue
		}
		for i, k := range en.keys {
			v := en.vals[i]
			if k == "when" {
				e.when = c.expr(v, "when", c.str(v, "when"), names)
				continue
			}
			if e.tag != "" {
				c.errf(v, "one segment per entry: %s and %s", e.tag, k)
				continue
			}
			e.tag = k
			c.segment(e, v, names, tags)
		}
		if e.tag == "" {
			c.errf(en, "entry without a segment")
			continue
		}
		out = append(out, e)
	}
	return out
}

func setTags(s *spec.Set) map[string]bool {
	m := map[string]bool{}
	for _, l := range allLoops(s.Root, nil) {
		for _, ch := range l.Children {
			if ch.Segment != nil {
				m[ch.Segment.ID] = true
			}
		}
	}
	return m
}

func (c *compiler) segment(e *segEntry, v *ynode, names []string, tags map[string]bool) {
	if c.m.set == nil {
		return
	}
	if e.tag == "ST" || e.tag == "SE" {
		c.errf(v, "%s is written from the envelope, not the mapping", e.tag)
		return
	}
	if !tags[e.tag] {
		c.errf(v, "segment %s is not in transaction set %s", e.tag, c.m.set.ID)
		return
	}
	for _, l := range allLoops(c.m.set.Root, nil) {
		for _, ch := range l.Children {
			if ch.Segment != nil && ch.Segment.ID == e.tag {
				e.def = ch.Segment
			}
		}
	}
	if v.kind != 'm' {
		c.errf(v, "%s: element values must be a mapping (%s01: ...)", e.tag, e.tag)
		return
	}
	seen := map[int]bool{}
	for i, k := range v.keys {
		pos, err := strconv.Atoi(strings.TrimPrefix(k, e.tag))
		if !strings.HasPrefix(k, e.tag) || len(k) != len(e.tag)+2 || err != nil || pos < 1 || pos > len(e.def.Elements) {
			c.errf(v.vals[i], "%s: %q is not an element of %s (it has %s01..%s%02d)", e.tag, k, e.tag, e.tag, e.tag, len(e.def.Elements))
			continue
		}
		oe := outElement{pos: pos, key: k, ref: e.def.Elements[pos-1]}
		src := c.str(v.vals[i], k)
		if strings.HasPrefix(src, "=") {
			oe.program = c.expr(v.vals[i], e.tag+"."+k, src[1:], names)
		} else {
			oe.literal = src
			if msg := checkOut(oe.ref, src); msg != "" {
				c.errf(v.vals[i], "%s: %s", k, msg)
			}
		}
		seen[pos] = true
		e.elements = append(e.elements, oe)
	}
	for i, ref := range e.def.Elements {
		if ref.Usage == spec.Mandatory && !seen[i+1] {
			c.errf(v, "%s: mandatory element %s%02d has no value", e.tag, e.tag, i+1)
		}
	}
}

// Envelope holds what an outbound interchange needs besides the document:
// addresses and control numbers come from the partner profile and the
// spool's counters.
type Envelope struct {
	Interchange edi.ISAHeader // sender/receiver, version, control number, usage
	Group       edi.GSHeader  // functional id, application ids, control number, version
	SetControl  string        // ST02
	Delimiters  edi.Delimiters
	EOL         string
}

// Outbound writes doc (a canonical document as encoding/json decodes it,
// with UseNumber) as one X12 interchange (ISA, GS, ST, the mapped segments,
// SE, GE, IEA) and checks it with the X12 validator before anything is
// returned, so an 850 that would be rejected never leaves.
func (m *Map) Outbound(doc map[string]any, env Envelope, out io.Writer) error {
	if m.Direction != "outbound" {
		return fmt.Errorf("%s: not an outbound mapping", m.File)
	}
	if m.Source.Schema != "" {
		if err := ValidateDocument(m.Source.Schema, doc); err != nil {
			return fmt.Errorf("input does not satisfy %s: %w", m.Source.Schema, err)
		}
	}
	var buf bytes.Buffer
	w := edi.NewWriter(&buf, env.Delimiters, env.EOL)
	if env.Group.Date == "" {
		now := time.Now()
		env.Group.Date, env.Group.Time = now.Format("20060102"), now.Format("1504")
		if env.Interchange.Date == "" {
			env.Interchange.Date, env.Interchange.Time = now.Format("060102"), now.Format("1504")
		}
	}
	if err := w.BeginInterchange(env.Interchange); err != nil {
		return err
	}
	if err := w.BeginGroup(env.Group); err != nil {
		return err
	}
	if err := w.BeginSet(m.Target.Transaction, env.SetControl, implRef(env.Group.Version)); err != nil {
		return err
	}
	vars := map[string]any{inputName: normalize(doc), "doc": normalize(doc)}
	var errs []error
	m.writeEntries(w, m.segments, vars, &errs)
	if len(errs) > 0 {
		return &DocError{Errs: errs}
	}
	w.EndSet()
	w.EndGroup()
	if err := w.EndInterchange(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := selfCheck(buf.Bytes()); err != nil {
		return fmt.Errorf("%s: the %s written would be rejected: %w", m.File, m.Target.Transaction, err)
	}
	_, err := out.Write(buf.Bytes())
	return err
}

// implRef is ST03 for 005010 groups with an implementation guide in GS08.
func implRef(gs08 string) string {
	if strings.HasPrefix(gs08, "005") && len(gs08) > 6 {
		return gs08
	}
	return ""
}

// normalize turns a document into the plain types expressions expect
// (json.Number becomes float64 or int).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = normalize(e)
		}
		return l
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

func (m *Map) writeEntries(w *edi.Writer, entries []*segEntry, vars map[string]any, errs *[]error) {
	fail := func(e *segEntry, format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s:%d: %s", m.File, e.line, fmt.Sprintf(format, args...)))
	}
	for _, e := range entries {
		if e.when != nil {
			v, err := expr.Run(e.when, vars)
			if err != nil {
				fail(e, "when: %v", err)
				continue
			}
			if b, _ := v.(bool); !b {
				continue
			}
		}
		if e.foreach != nil {
			v, err := expr.Run(e.foreach, vars)
			if err != nil {
				fail(e, "foreach: %v", err)
				continue
			}
			list, ok := v.([]any)
			if !ok && v != nil {
				fail(e, "foreach: %T is not a list", v)
				continue
			}
			for i, it := range list {
				inner := make(map[string]any, len(vars)+2)
				for k, x := range vars {
					inner[k] = x
				}
				inner[e.as], inner["index"] = it, i
				m.writeEntries(w, e.children, inner, errs)
			}
			continue
		}
		vals := make([]string, len(e.def.Elements))
		comps := make([][]string, len(e.def.Elements))
		bad := false
		for _, oe := range e.elements {
			s := oe.literal
			if oe.program != nil {
				v, err := expr.Run(oe.program, vars)
				if err != nil {
					fail(e, "%s: %v", oe.key, err)
					bad = true
					continue
				}
				if list, ok := v.([]any); ok && oe.ref.Composite != nil {
					for k, x := range list {
						if k < len(oe.ref.Composite.Components) {
							cs, _ := formatOut(oe.ref.Composite.Components[k], x)
							comps[oe.pos-1] = append(comps[oe.pos-1], cs)
						}
					}
					vals[oe.pos-1] = strings.Join(comps[oe.pos-1], "")
					continue
				}
				if s, err = formatOut(oe.ref, v); err != nil {
					fail(e, "%s: %v", oe.key, err)
					bad = true
					continue
				}
				if msg := checkOut(oe.ref, s); s != "" && msg != "" {
					fail(e, "%s: %s", oe.key, msg)
					bad = true
					continue
				}
			}
			vals[oe.pos-1] = s
		}
		for i, ref := range e.def.Elements {
			if ref.Usage == spec.Mandatory && vals[i] == "" && !bad {
				fail(e, "%s%02d is mandatory but empty", e.tag, i+1)
				bad = true
			}
		}
		if bad {
			continue
		}
		w.Seg(e.tag)
		for i, v := range vals {
			if comps[i] != nil {
				w.Comp(comps[i]...)
			} else {
				w.El(v)
			}
		}
		if err := w.End(); err != nil {
			fail(e, "%v", err)
		}
	}
}

// formatOut formats a value for an element by its X12 type.
func formatOut(ref *spec.ElementRef, v any) (string, error) {
	if v == nil {
		return "", nil
	}
	el := ref.Element
	if el == nil {
		return fmt.Sprint(v), nil
	}
	num := func() (float64, bool) {
		switch x := v.(type) {
		case int:
			return float64(x), true
		case int64:
			return float64(x), true
		case float64:
			return x, true
		case json.Number:
			f, err := x.Float64()
			return f, err == nil
		case string:
			f, err := strconv.ParseFloat(x, 64)
			return f, err == nil
		}
		return 0, false
	}
	switch {
	case el.Type == "DT":
		s := fmt.Sprint(v)
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			if len(s) == 8 || len(s) == 6 {
				return s, nil
			}
			return "", fmt.Errorf("%q is not a date (YYYY-MM-DD)", s)
		}
		if el.Max == 6 {
			return t.Format("060102"), nil
		}
		return t.Format("20060102"), nil
	case el.Type == "TM":
		s := strings.ReplaceAll(fmt.Sprint(v), ":", "")
		return s, nil
	case el.Type == "R":
		f, ok := num()
		if !ok {
			return "", fmt.Errorf("%v is not a number", v)
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	case el.Type == "N" || strings.HasPrefix(el.Type, "N") && len(el.Type) == 2 || el.Decimals > 0:
		f, ok := num()
		if !ok {
			return "", fmt.Errorf("%v is not a number", v)
		}
		return strconv.FormatInt(int64(math.Round(f*math.Pow10(el.Decimals))), 10), nil
	}
	return fmt.Sprint(v), nil
}

// checkOut checks an outgoing value's length and code list.
func checkOut(ref *spec.ElementRef, s string) string {
	el := ref.Element
	if el == nil || s == "" {
		return ""
	}
	n := len(strings.TrimPrefix(s, "-"))
	if el.Type == "R" {
		n = len(strings.ReplaceAll(strings.TrimPrefix(s, "-"), ".", ""))
	}
	if n < el.Min || n > el.Max {
		return fmt.Sprintf("%q must be %d-%d characters (%s)", s, el.Min, el.Max, el.Name)
	}
	codes := ref.Codes
	if codes == nil {
		codes = el.Codes
	}
	if el.Type == "ID" && codes != nil {
		if _, ok := codes[s]; !ok {
			return fmt.Sprintf("%q is not a code of data element %s (%s)", s, el.ID, el.Name)
		}
	}
	return ""
}

// selfCheck runs the X12 validator over an interchange we wrote.
func selfCheck(data []byte) error {
	var problems []string
	err := edi.Process(bytes.NewReader(data), edi.Options{
		OnInterchange: func(ic *edi.Interchange) {
			for _, f := range ic.Findings {
				problems = append(problems, f.String())
			}
		},
		OnGroup: func(_ *edi.Interchange, g *edi.Group) {
			for _, f := range g.Findings {
				problems = append(problems, f.String())
			}
			for _, s := range g.Sets {
				for _, f := range s.Findings {
					problems = append(problems, f.String())
				}
			}
		},
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
