package mapping

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/edi/spec"
)

// A selector picks loops, segments or element values out of an X12 loop
// tree (docs: README "Mapping reference"). It is a closed subset of JSONata
// path syntax, compiled once and checked against the transaction-set spec:
//
//	HL_S.REF[REF01='BM'].REF02
//	HL_S.N1_loop[N1.N101='ST'].N1.N104
//	PO1_loop[0].PO1.PO102      HL_O.**.HL_I      $$.BSN.BSN02
//	REF[REF01 in ['CN','2I'] and REF02 != ''].REF02
type selector struct {
	src   string
	root  bool // starts at the set root ($$.)
	steps []step
	// simple: only child steps without predicates and one element step at
	// the end (PO1.PO102, HL_S.TD5.TD503): first() walks it without
	// building item lists. Most fields are such selectors.
	simple bool
	// walkable: no index predicates, and conditions only on loop and
	// segment steps, so that a depth-first walk (findFrom, visit) yields
	// what eval does, in its order: first() stops at the first match
	// instead of listing them all.
	walkable bool
	// plain: child steps without predicates down to one element (N1.N101,
	// REF01), which conditions compare without visit's callbacks.
	plain bool
	// chain: child steps without predicates down to a loop or segment
	// (PO1 for its product-ID pairs, N1_loop), walked as simple ones are.
	chain bool
}

type stepKind uint8

const (
	stepChild   stepKind = iota + 1 // loops or segments of a loop instance
	stepElement                     // an element (or component) of a segment
	stepDescend                     // ** : the instance and every loop below it
)

type step struct {
	kind  stepKind
	name  string
	key   uint32 // spec.TagKey(name), for segment steps
	elem  int    // element position (stepElement)
	comp  int    // component position, 0 = the whole element
	preds []pred
}

type pred struct {
	index int // when cond is nil: 0-based, negative from the end
	cond  *cond
}

type cond struct {
	op     string // "or", "and", "=", "!=", "in", "exists"
	l, r   *cond
	path   *selector
	values []string
}

// item is what a selector yields: a loop instance, a segment, or a value.
type item struct {
	node *edi.Node
	seg  *edi.Segment
	val  string
	isV  bool
}

// text is the item as a string: a value, or the raw segment.
func (it item) text() string {
	switch {
	case it.isV:
		return it.val
	case it.seg != nil:
		return it.seg.String()
	}
	return ""
}

// ---- parsing ----

type lexer struct {
	s   string
	pos int
}

func (l *lexer) ws() {
	for l.pos < len(l.s) && (l.s[l.pos] == ' ' || l.s[l.pos] == '\t') {
		l.pos++
	}
}

func (l *lexer) peek(t string) bool {
	l.ws()
	return strings.HasPrefix(l.s[l.pos:], t)
}

func (l *lexer) eat(t string) bool {
	if l.peek(t) {
		l.pos += len(t)
		return true
	}
	return false
}

func (l *lexer) word() string {
	l.ws()
	st := l.pos
	for l.pos < len(l.s) {
		c := l.s[l.pos]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			l.pos++
			continue
		}
		break
	}
	return l.s[st:l.pos]
}

func (l *lexer) errf(format string, args ...any) error {
	return fmt.Errorf("selector %q at %d: %s", l.s, l.pos+1, fmt.Sprintf(format, args...))
}

func parseSelector(s string) (*selector, error) {
	l := &lexer{s: s}
	sel, err := l.path()
	if err != nil {
		return nil, err
	}
	l.ws()
	if l.pos != len(s) {
		return nil, l.errf("unexpected %q", s[l.pos:])
	}
	return sel, nil
}

func (l *lexer) path() (*selector, error) {
	sel := &selector{src: l.s}
	start := l.pos
	if l.eat("$$.") {
		sel.root = true
	}
	for {
		var st step
		if l.eat("**") {
			st.kind = stepDescend
		} else {
			st.kind = stepChild
			st.name = l.word()
			if st.name == "" {
				return nil, l.errf("expected a loop, segment or element name")
			}
		}
		for l.peek("[") {
			l.eat("[")
			p, err := l.pred()
			if err != nil {
				return nil, err
			}
			if !l.eat("]") {
				return nil, l.errf("expected ]")
			}
			st.preds = append(st.preds, p)
		}
		sel.steps = append(sel.steps, st)
		if !l.peek(".") {
			break
		}
		l.eat(".")
	}
	sel.src = strings.TrimSpace(l.s[start:l.pos])
	return sel, nil
}

func (l *lexer) pred() (pred, error) {
	l.ws()
	if l.pos < len(l.s) && (l.s[l.pos] == '-' || l.s[l.pos] >= '0' && l.s[l.pos] <= '9') {
		w := l.word()
		n, err := strconv.Atoi(w)
		if err != nil {
			return pred{}, l.errf("bad index %q", w)
		}
		return pred{index: n}, nil
	}
	c, err := l.or()
	return pred{cond: c}, err
}

func (l *lexer) or() (*cond, error) {
	c, err := l.and()
	for err == nil && l.eatWord("or") {
		var r *cond
		r, err = l.and()
		c = &cond{op: "or", l: c, r: r}
	}
	return c, err
}

func (l *lexer) and() (*cond, error) {
	c, err := l.cmp()
	for err == nil && l.eatWord("and") {
		var r *cond
		r, err = l.cmp()
		c = &cond{op: "and", l: c, r: r}
	}
	return c, err
}

// eatWord eats a keyword followed by a space.
func (l *lexer) eatWord(w string) bool {
	if l.peek(w+" ") || l.peek(w+"\t") {
		l.pos += len(w)
		return true
	}
	return false
}

func (l *lexer) cmp() (*cond, error) {
	if l.eat("(") {
		c, err := l.or()
		if err == nil && !l.eat(")") {
			err = l.errf("expected )")
		}
		return c, err
	}
	p, err := l.path()
	if err != nil {
		return nil, err
	}
	switch {
	case l.eat("!="):
		v, err := l.literal()
		return &cond{op: "!=", path: p, values: []string{v}}, err
	case l.eat("="):
		v, err := l.literal()
		return &cond{op: "=", path: p, values: []string{v}}, err
	case l.eatWord("in"):
		if !l.eat("[") {
			return nil, l.errf("expected [ after in")
		}
		var vs []string
		for {
			v, err := l.literal()
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
			if l.eat("]") {
				break
			}
			if !l.eat(",") {
				return nil, l.errf("expected , or ]")
			}
		}
		return &cond{op: "in", path: p, values: vs}, nil
	}
	return &cond{op: "exists", path: p}, nil
}

func (l *lexer) literal() (string, error) {
	l.ws()
	if l.pos < len(l.s) && (l.s[l.pos] == '\'' || l.s[l.pos] == '"') {
		q := l.s[l.pos]
		end := strings.IndexByte(l.s[l.pos+1:], q)
		if end < 0 {
			return "", l.errf("unterminated string")
		}
		v := l.s[l.pos+1 : l.pos+1+end]
		l.pos += end + 2
		return v, nil
	}
	w := l.word()
	if w == "" {
		return "", l.errf("expected a quoted value")
	}
	return w, nil
}

// ---- checking against the transaction-set spec ----

// sctx is where a selector stands in the spec while it is checked.
type sctx struct {
	set   *spec.Set
	loops []*spec.Loop  // loop instances the step can be in
	seg   *spec.Segment // after a segment step
	any   bool          // after **: any loop of the set
}

func allLoops(l *spec.Loop, out []*spec.Loop) []*spec.Loop {
	out = append(out, l)
	for _, c := range l.Children {
		if c.Loop != nil {
			out = allLoops(c.Loop, out)
		}
	}
	return out
}

func hlLoop(s *spec.Set) *spec.Loop {
	for _, l := range allLoops(s.Root, nil) {
		if l.ID == "HL" {
			return l
		}
	}
	return nil
}

// check resolves every step against the set's spec and records element
// positions; a name the spec does not have is an error at load.
func (s *selector) check(set *spec.Set, from sctx) error {
	c := from
	if s.root {
		c = sctx{set: set, loops: []*spec.Loop{set.Root}}
	}
	for i := range s.steps {
		st := &s.steps[i]
		if st.kind == stepDescend {
			if c.seg != nil {
				return fmt.Errorf("selector %q: ** after segment %s", s.src, c.seg.ID)
			}
			c = sctx{set: set, loops: allLoops(set.Root, nil), any: true}
			continue
		}
		next, err := c.resolve(st)
		if err != nil {
			return fmt.Errorf("selector %q: %w", s.src, err)
		}
		for _, p := range st.preds {
			if p.cond != nil {
				if err := p.cond.check(set, next); err != nil {
					return err
				}
			}
		}
		c = next
	}
	s.plain, s.chain = true, true
	s.walkable = true
	for i := range s.steps {
		st := &s.steps[i]
		st.key = spec.TagKey([]byte(st.name))
		last := i == len(s.steps)-1
		if len(st.preds) > 0 || (last && st.kind != stepElement) || (!last && st.kind != stepChild) {
			s.plain = false
		}
		if len(st.preds) > 0 || st.kind != stepChild {
			s.chain = false
		}
		for _, p := range st.preds {
			if p.cond == nil || st.kind != stepChild {
				s.walkable = false
			}
		}
	}
	s.simple = s.plain && len(s.steps) >= 2
	return nil
}

func (c *cond) check(set *spec.Set, at sctx) error {
	if c.path != nil {
		for _, st := range c.path.steps {
			for _, p := range st.preds {
				if p.cond == nil {
					return fmt.Errorf("selector %q: an index [%d] cannot be used inside a condition", c.path.src, p.index)
				}
			}
		}
		if err := c.path.check(set, at); err != nil {
			return err
		}
	}
	if c.l != nil {
		if err := c.l.check(set, at); err != nil {
			return err
		}
	}
	if c.r != nil {
		return c.r.check(set, at)
	}
	return nil
}

// resolve turns one name step into the next context.
func (c sctx) resolve(st *step) (sctx, error) {
	if c.seg != nil {
		tag := c.seg.ID
		name := st.name
		comp := 0
		if k := strings.IndexByte(name, '-'); k > 0 {
			n, err := strconv.Atoi(name[k+1:])
			if err != nil || n < 1 {
				return c, fmt.Errorf("bad component in %q", name)
			}
			comp, name = n, name[:k]
		}
		if !strings.HasPrefix(name, tag) || len(name) != len(tag)+2 {
			return c, fmt.Errorf("%q is not an element of segment %s (write %s01, %s02 ...)", st.name, tag, tag, tag)
		}
		pos, err := strconv.Atoi(name[len(tag):])
		if err != nil || pos < 1 || pos > len(c.seg.Elements) {
			return c, fmt.Errorf("segment %s has no element %s (it has %d)", tag, name, len(c.seg.Elements))
		}
		ref := c.seg.Elements[pos-1]
		if comp > 0 && (ref.Composite == nil || comp > len(ref.Composite.Components)) {
			return c, fmt.Errorf("%s is not a composite with a component %d", name, comp)
		}
		st.kind, st.elem, st.comp = stepElement, pos, comp
		return sctx{set: c.set}, nil
	}
	if c.loops == nil {
		return c, fmt.Errorf("%q after an element value", st.name)
	}
	if strings.HasPrefix(st.name, "HL_") && c.set.HL {
		return sctx{set: c.set, loops: []*spec.Loop{hlLoop(c.set)}}, nil
	}
	var segs []*spec.Segment
	var loops []*spec.Loop
	for _, l := range c.loops {
		for _, ch := range l.Children {
			switch {
			case ch.Loop != nil && ch.Loop.ID+"_loop" == st.name:
				loops = append(loops, ch.Loop)
			case ch.Segment != nil && ch.Segment.ID == st.name:
				segs = append(segs, ch.Segment)
			}
		}
	}
	switch {
	case len(loops) > 0:
		return sctx{set: c.set, loops: loops}, nil
	case len(segs) > 0:
		return sctx{set: c.set, seg: segs[0]}, nil
	}
	return c, fmt.Errorf("%s %s has no segment or loop %q here (it has: %s)", c.set.ID, where(c), st.name, childNames(c))
}

func where(c sctx) string {
	if c.any {
		return "(any loop)"
	}
	var ids []string
	for _, l := range c.loops {
		if l.ID == "" {
			ids = append(ids, "root")
		} else {
			ids = append(ids, l.ID+"_loop")
		}
	}
	return strings.Join(ids, "|")
}

func childNames(c sctx) string {
	seen := map[string]bool{}
	var names []string
	for _, l := range c.loops {
		for _, ch := range l.Children {
			n := ""
			if ch.Loop != nil {
				n = ch.Loop.ID + "_loop"
				if ch.Loop.ID == "HL" && c.set.HL {
					n = "HL_<level>"
				}
			} else {
				n = ch.Segment.ID
			}
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	if c.set.HL && !seen["HL_<level>"] {
		for _, l := range c.loops {
			if l.ID == "HL" {
				names = append(names, "HL_<level>")
				break
			}
		}
	}
	if len(names) > 12 {
		names = append(names[:12], "...")
	}
	return strings.Join(names, ", ")
}

// ---- evaluation ----

// evaluator holds scratch space so that selectors allocate nothing per step;
// one belongs to each run, and passes to the mapping's next document.
type evaluator struct {
	a, b  []item
	one   []item // what first() and let: lists evaluate into
	lists []item // the items of the foreach lists being mapped, nested lists' on top
	doc   *tree  // the document being mapped, whose text str copies values into
}

// str copies an element value out of its segment into the document's text.
func (e *evaluator) str(b []byte) string { return e.doc.addText(b) }

// clear drops what the scratch space points to (loop trees, values),
// keeping its room.
func (e *evaluator) clear() {
	for _, s := range [][]item{e.a, e.b, e.one, e.lists} {
		clear(s[:cap(s)])
	}
	e.a, e.b, e.one, e.lists, e.doc = e.a[:0], e.b[:0], e.one[:0], e.lists[:0], nil
}

// first returns the first thing the selector yields from ctx (or root): a
// value, or a loop or segment item. Only selectors with index predicates
// need the whole list to find it; the others stop at their first match and
// allocate nothing but the value.
func (s *selector) first(e *evaluator, root, ctx *item) (item, bool) {
	switch {
	case s.simple:
		v, ok := s.firstValue(root, ctx)
		return item{val: e.str(v), isV: true}, ok
	case s.chain:
		n := ctx.node
		if s.root {
			n = root.node
		}
		return s.firstItemIn(n, 0)
	case s.walkable:
		start := *ctx
		if s.root {
			start = *root
		}
		it, v, ok := s.findFrom(root, start, 0)
		if v != nil {
			it = item{val: e.str(v), isV: true}
		}
		return it, ok
	}
	e.one = s.eval(e, *root, *ctx, e.one[:0])
	if len(e.one) == 0 {
		return item{}, false
	}
	return e.one[0], true
}

// eval applies the selector to ctx (or to root when it starts with $$.) and
// appends what it yields to out.
func (s *selector) eval(e *evaluator, root, ctx item, out []item) []item {
	cur := append(e.a[:0], ctx)
	if s.root {
		cur[0] = root
	}
	next := e.b[:0]
	for i := range s.steps {
		st := &s.steps[i]
		next = next[:0]
		for _, it := range cur {
			next = st.apply(e, it, next)
		}
		for _, p := range st.preds {
			next = p.filter(root, next)
		}
		cur, next = next, cur
		if len(cur) == 0 {
			break
		}
	}
	out = append(out, cur...)
	e.a, e.b = cur[:0], next[:0]
	return out
}

func (st *step) apply(e *evaluator, it item, out []item) []item {
	switch st.kind {
	case stepDescend:
		if it.node != nil {
			out = descend(it.node, out)
		}
	case stepElement:
		if it.seg == nil {
			return out
		}
		if v := st.value(it.seg); len(v) > 0 {
			out = append(out, item{val: e.str(v), isV: true})
		}
	case stepChild:
		if it.node == nil {
			return out
		}
		for _, c := range it.node.Items {
			if ci, ok := st.child(c); ok {
				out = append(out, ci)
			}
		}
	}
	return out
}

// firstValue returns the first value a simple selector yields, without
// allocating: its child steps walk loop instances down to the segments
// whose element the last step reads.
func (s *selector) firstValue(root, ctx *item) ([]byte, bool) {
	n := ctx.node
	if s.root {
		n = root.node
	}
	return s.firstIn(n, 0)
}

// firstIn applies child step i to loop instance n. Loops have no elements
// and segments no children, so the step before the element matches only
// segments, and the others only loops.
func (s *selector) firstIn(n *edi.Node, i int) ([]byte, bool) {
	if n == nil {
		return nil, false
	}
	st := &s.steps[i]
	segStep := i == len(s.steps)-2
	for _, c := range n.Items {
		switch {
		case c.Loop != nil:
			if segStep || c.Loop.ID != st.name {
				continue
			}
			if v, ok := s.firstIn(c.Loop, i+1); ok {
				return v, true
			}
		case segStep && spec.TagKey(c.Segment.Tag()) == st.key:
			if v := s.steps[i+1].value(c.Segment); len(v) > 0 {
				return v, true
			}
		}
	}
	return nil, false
}

// firstItemIn is firstIn for chain selectors: the first loop or segment
// that child steps i and on lead to from loop instance n.
func (s *selector) firstItemIn(n *edi.Node, i int) (item, bool) {
	if n == nil {
		return item{}, false
	}
	st := &s.steps[i]
	last := i == len(s.steps)-1
	for _, c := range n.Items {
		switch {
		case c.Loop != nil:
			if c.Loop.ID != st.name {
				continue
			}
			if last {
				return item{node: c.Loop}, true
			}
			if it, ok := s.firstItemIn(c.Loop, i+1); ok {
				return it, true
			}
		case last && spec.TagKey(c.Segment.Tag()) == st.key:
			return item{seg: c.Segment}, true
		}
	}
	return item{}, false
}

// child returns the item of a loop or segment in a node's items that a
// child step named st.name selects.
func (st *step) child(c edi.Item) (item, bool) {
	switch {
	case c.Loop != nil && c.Loop.ID == st.name:
		return item{node: c.Loop}, true
	case c.Loop == nil && string(c.Segment.Tag()) == st.name:
		return item{seg: c.Segment}, true
	}
	return item{}, false
}

func (st *step) value(seg *edi.Segment) []byte {
	if st.comp > 0 {
		return seg.Component(st.elem, st.comp)
	}
	return seg.Element(st.elem)
}

func descend(n *edi.Node, out []item) []item {
	out = append(out, item{node: n})
	for _, c := range n.Items {
		if c.Loop != nil {
			out = descend(c.Loop, out)
		}
	}
	return out
}

func (p pred) filter(root item, in []item) []item {
	if p.cond == nil {
		i := p.index
		if i < 0 {
			i += len(in)
		}
		if i < 0 || i >= len(in) {
			return in[:0]
		}
		return append(in[:0], in[i])
	}
	out := in[:0]
	for _, it := range in {
		if p.cond.test(root, it) {
			out = append(out, it)
		}
	}
	return out
}

// visit calls fn for what the selector yields from ctx — an element's bytes,
// or a loop/segment item — without allocating, and stops when fn returns
// true. Predicates use it. Index predicates are not supported here (check
// rejects them inside predicates).
func (s *selector) visit(root, ctx item, fn func(it item, v []byte) bool) bool {
	if s.root {
		ctx = root
	}
	return s.visitFrom(root, ctx, 0, fn)
}

func (s *selector) visitFrom(root, it item, i int, fn func(item, []byte) bool) bool {
	if i == len(s.steps) {
		if it.isV {
			return fn(item{}, []byte(it.val))
		}
		return fn(it, nil)
	}
	st := &s.steps[i]
	ok := func(c item) bool {
		for _, p := range st.preds {
			if p.cond != nil && !p.cond.test(root, c) {
				return false
			}
		}
		return true
	}
	switch st.kind {
	case stepElement:
		if it.seg == nil {
			return false
		}
		v := st.value(it.seg)
		return len(v) > 0 && i == len(s.steps)-1 && fn(item{}, v)
	case stepDescend:
		if it.node == nil {
			return false
		}
		if s.visitFrom(root, it, i+1, fn) {
			return true
		}
		for _, c := range it.node.Items {
			if c.Loop != nil && s.visitFrom(root, item{node: c.Loop}, i, fn) {
				return true
			}
		}
	case stepChild:
		if it.node == nil {
			return false
		}
		for _, c := range it.node.Items {
			ci, found := st.child(c)
			if !found {
				continue
			}
			if ok(ci) && s.visitFrom(root, ci, i+1, fn) {
				return true
			}
		}
	}
	return false
}

// findFrom is visitFrom for first(): what a walkable selector yields first
// from step i on, a loop or segment item or an element's bytes, found
// without a callback per step.
func (s *selector) findFrom(root *item, it item, i int) (item, []byte, bool) {
	if i == len(s.steps) {
		return it, nil, true
	}
	st := &s.steps[i]
	switch st.kind {
	case stepElement:
		if it.seg == nil || i != len(s.steps)-1 {
			return item{}, nil, false
		}
		v := st.value(it.seg)
		return item{}, v, len(v) > 0
	case stepDescend:
		if it.node == nil {
			return item{}, nil, false
		}
		if f, v, ok := s.findFrom(root, it, i+1); ok {
			return f, v, true
		}
		for _, c := range it.node.Items {
			if c.Loop == nil {
				continue
			}
			if f, v, ok := s.findFrom(root, item{node: c.Loop}, i); ok {
				return f, v, true
			}
		}
	case stepChild:
		if it.node == nil {
			return item{}, nil, false
		}
	items:
		for _, c := range it.node.Items {
			ci, ok := st.child(c)
			if !ok {
				continue
			}
			for _, p := range st.preds {
				if !p.cond.test(*root, ci) { // walkable: every predicate is a condition
					continue items
				}
			}
			if f, v, ok := s.findFrom(root, ci, i+1); ok {
				return f, v, true
			}
		}
	}
	return item{}, nil, false
}

// matchFrom is the comparison of a condition on a plain path: whether a
// value it yields from step i on is one of want; seen is set when it
// yields any.
func (s *selector) matchFrom(it item, i int, want []string, seen *bool) bool {
	st := &s.steps[i]
	if st.kind == stepElement {
		if it.seg == nil {
			return false
		}
		v := st.value(it.seg)
		if len(v) == 0 {
			return false
		}
		*seen = true
		for _, w := range want {
			if string(v) == w {
				return true
			}
		}
		return false
	}
	if it.node == nil {
		return false
	}
	for _, c := range it.node.Items {
		ci, ok := st.child(c)
		if !ok {
			continue
		}
		if s.matchFrom(ci, i+1, want, seen) {
			return true
		}
	}
	return false
}

func (c *cond) test(root, it item) bool {
	switch c.op {
	case "or":
		return c.l.test(root, it) || c.r.test(root, it)
	case "and":
		return c.l.test(root, it) && c.r.test(root, it)
	case "exists":
		return c.path.visit(root, it, func(item, []byte) bool { return true })
	}
	// An absent element compares as the empty string.
	seen := false
	var match bool
	if c.path.plain {
		start := it
		if c.path.root {
			start = root
		}
		match = c.path.matchFrom(start, 0, c.values, &seen)
	} else {
		match = c.path.visit(root, it, func(x item, v []byte) bool {
			seen = true
			if v == nil {
				v = []byte(x.text())
			}
			for _, want := range c.values {
				if string(v) == want {
					return true
				}
			}
			return false
		})
	}
	if !seen {
		for _, want := range c.values {
			if want == "" {
				match = true
			}
		}
	}
	if c.op == "!=" {
		return !match
	}
	return match
}
