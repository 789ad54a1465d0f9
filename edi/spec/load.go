package spec

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

//go:embed data
var embedded embed.FS

// versions are the dictionary versions this package ships, oldest first.
var versions = []string{"004010", "005010"}

// Versions returns the supported dictionary versions, oldest first.
func Versions() []string { return slices.Clone(versions) }

// Dictionary is the resolved X12 dictionary of one version: every element,
// composite and segment definition, and the transaction sets.
type Dictionary struct {
	Version    string
	Elements   map[string]*Element
	Composites map[string]*Composite
	Segments   map[string]*Segment
	Sets       map[string]*Set // keyed by transaction set ID, e.g. "850"
}

// Set returns the transaction set id ("850"), or nil if it is not defined in
// this version.
func (d *Dictionary) Set(id string) *Set {
	if d == nil {
		return nil
	}
	return d.Sets[id]
}

// Segment returns the segment definition for tag, or nil if unknown.
func (d *Dictionary) Segment(tag string) *Segment {
	if d == nil {
		return nil
	}
	return d.Segments[tag]
}

// Family maps a version string as found in GS08 (e.g. "004010VICS",
// "005010X231A1") or ISA12 (e.g. "00401") to the dictionary version used to
// validate it: anything starting with "004" is validated with the 004010
// specs (so 0040xx releases such as 004060 are checked against 004010), and
// anything starting with "005" with 005010. Other versions return "" (not
// supported).
func Family(gs08 string) string {
	switch {
	case strings.HasPrefix(gs08, "004"):
		return "004010"
	case strings.HasPrefix(gs08, "005"):
		return "005010"
	}
	return ""
}

// Load loads and validates the embedded dictionary of version ("004010" or
// "005010"). Each call builds a fresh Dictionary; see Default for a shared,
// cached one.
func Load(version string) (*Dictionary, error) {
	sub, err := fs.Sub(embedded, "data")
	if err != nil {
		return nil, err
	}
	return LoadFS(sub, version)
}

// LoadFS loads a dictionary from fsys, which holds elements.yaml,
// composites.yaml, segments.yaml and sets/*.yaml in the embedded format.
func LoadFS(fsys fs.FS, version string) (*Dictionary, error) {
	if !slices.Contains(versions, version) {
		return nil, fmt.Errorf("spec: unsupported version %q (supported: %s)", version, strings.Join(versions, ", "))
	}
	l := &loader{fsys: fsys, version: version, d: &Dictionary{
		Version:    version,
		Elements:   map[string]*Element{},
		Composites: map[string]*Composite{},
		Segments:   map[string]*Segment{},
		Sets:       map[string]*Set{},
	}}
	for _, step := range []func() error{l.elements, l.composites, l.segments, l.sets} {
		if err := step(); err != nil {
			return nil, err
		}
		if len(l.errs) > 0 {
			return nil, errors.Join(l.errs...)
		}
	}
	for _, s := range l.d.Segments {
		s.compile()
	}
	for _, s := range l.d.Sets {
		s.Root.compile() // segments built inside a set, if any, too
	}
	return l.d, nil
}

var (
	defaultOnce = map[string]*sync.Once{}
	defaultDict = map[string]*Dictionary{}
)

func init() {
	for _, v := range versions {
		defaultOnce[v] = new(sync.Once)
	}
}

// Default returns the shared dictionary of version, loading it on first use.
// It panics if version is not one of Versions() or if the embedded data does
// not load (the embedded data is covered by tests, so that is a build defect).
// The returned dictionary is shared: do not modify it; use Set.Clone or
// Dictionary.Apply to derive partner-specific sets.
func Default(version string) *Dictionary {
	once, ok := defaultOnce[version]
	if !ok {
		panic(fmt.Sprintf("spec: unsupported version %q", version))
	}
	once.Do(func() {
		d, err := Load(version)
		if err != nil {
			panic("spec: embedded X12 data does not load: " + err.Error())
		}
		defaultDict[version] = d
	})
	return defaultDict[version]
}

// ---- loader ----

type loader struct {
	fsys    fs.FS
	version string
	d       *Dictionary
	errs    []error
}

func (l *loader) errf(file string, p pos, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s:%d: %s", file, p.Line, fmt.Sprintf(format, args...)))
}

func (l *loader) read(file string, v any) error {
	data, err := fs.ReadFile(l.fsys, file)
	if err != nil {
		return err
	}
	return decodeYAML(file, data, v)
}

// later reports whether version a is later than version b ("005010" > "004010").
func later(a, b string) bool { return a > b }

func validVersion(v string) bool {
	if len(v) != 6 {
		return false
	}
	_, err := strconv.Atoi(v)
	return err == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseType validates an X12 data type; N is N0; Nn sets decimals.
func parseType(t string) (string, int, bool) {
	switch t {
	case "AN", "ID", "DT", "TM", "R", "B":
		return t, 0, true
	case "N":
		return "N0", 0, true
	}
	if len(t) == 2 && t[0] == 'N' && t[1] >= '0' && t[1] <= '9' {
		return t, int(t[1] - '0'), true
	}
	return "", 0, false
}

func (l *loader) elements() error {
	const file = "elements.yaml"
	var docs map[string]*located[elementDoc]
	if err := l.read(file, &docs); err != nil {
		return err
	}
	for _, id := range sortedKeys(docs) {
		ld := docs[id]
		doc := &ld.V
		e := &Element{ID: id, Name: doc.Name, Type: doc.Type}
		if doc.Min != nil {
			e.Min = *doc.Min
		}
		if doc.Max != nil {
			e.Max = *doc.Max
		}
		if doc.Codes != nil {
			e.Codes = maps.Clone(doc.Codes.codes)
		}
		if o := doc.override(l.version); o != nil {
			if o.Name != "" {
				e.Name = o.Name
			}
			if o.Type != "" {
				e.Type = o.Type
			}
			if o.Min != nil {
				e.Min = *o.Min
			}
			if o.Max != nil {
				e.Max = *o.Max
			}
			if o.Codes != nil {
				e.Codes = maps.Clone(o.Codes.codes)
			}
			if o.AddCodes != nil {
				if e.Codes == nil {
					l.errf(file, o.AddCodes.pos, "element %s: add_codes on an element without a code list", id)
				} else {
					maps.Copy(e.Codes, o.AddCodes.codes)
				}
			}
		}
		if e.Name == "" {
			l.errf(file, ld.pos, "element %s: missing name", id)
		}
		t, dec, ok := parseType(e.Type)
		if !ok {
			l.errf(file, ld.pos, "element %s: invalid type %q (want AN, ID, DT, TM, R, B, N or N0..N9)", id, e.Type)
		}
		e.Type, e.Decimals, e.Kind = t, dec, KindOf(t)
		if e.Min < 1 || e.Max < e.Min {
			l.errf(file, ld.pos, "element %s: invalid length min=%d max=%d", id, e.Min, e.Max)
		}
		for _, c := range sortedKeys(e.Codes) {
			if len(c) < e.Min || len(c) > e.Max {
				l.errf(file, ld.pos, "element %s: code %q does not fit length %d-%d", id, c, e.Min, e.Max)
			}
		}
		l.d.Elements[id] = e
	}
	return nil
}

// posSpec is a parsed element position string "<id> <M|O|X> [rep=N]
// [since=V] [codes=A,B]".
type posSpec struct {
	id    string
	usage Usage
	rep   int
	since string
	codes []string
}

func parsePos(s string) (posSpec, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return posSpec{}, fmt.Errorf("element position %q: want \"<id> <M|O|X> [options]\"", s)
	}
	p := posSpec{id: f[0], rep: 1}
	switch f[1] {
	case "M", "O", "X":
		p.usage = Usage(f[1][0])
	default:
		return posSpec{}, fmt.Errorf("element position %q: usage must be M, O or X", s)
	}
	for _, opt := range f[2:] {
		k, v, ok := strings.Cut(opt, "=")
		if !ok || v == "" {
			return posSpec{}, fmt.Errorf("element position %q: bad option %q", s, opt)
		}
		switch k {
		case "rep":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return posSpec{}, fmt.Errorf("element position %q: bad rep %q", s, v)
			}
			p.rep = n
		case "since":
			if !validVersion(v) {
				return posSpec{}, fmt.Errorf("element position %q: bad since %q", s, v)
			}
			p.since = v
		case "codes":
			p.codes = strings.Split(v, ",")
		default:
			return posSpec{}, fmt.Errorf("element position %q: unknown option %q", s, k)
		}
	}
	return p, nil
}

// positions resolves a list of element position strings for the loaded
// version. Positions added in a later version are dropped; they must be
// trailing. total is the number of positions in the latest version.
func (l *loader) positions(file, owner string, list []scalar, allowComposite bool) (refs []*ElementRef, total int) {
	dropped := false
	for i, sc := range list {
		p, err := parsePos(sc.S)
		if err != nil {
			l.errf(file, sc.pos, "%s: %v", owner, err)
			continue
		}
		total++
		if p.since != "" && later(p.since, l.version) {
			dropped = true
			continue
		}
		if dropped {
			l.errf(file, sc.pos, "%s position %d: positions after one added in a later version must carry since= too", owner, i+1)
			continue
		}
		ref := &ElementRef{Usage: p.usage, Repeat: p.rep, Since: p.since}
		if c, ok := l.d.Composites[p.id]; ok {
			if !allowComposite {
				l.errf(file, sc.pos, "%s position %d: composite %s cannot be nested", owner, i+1, p.id)
				continue
			}
			ref.Composite = c
			if p.codes != nil {
				l.errf(file, sc.pos, "%s position %d: codes= on composite %s", owner, i+1, p.id)
			}
		} else if e, ok := l.d.Elements[p.id]; ok {
			ref.Element = e
			if p.codes != nil {
				ref.Codes = map[string]string{}
				for _, c := range p.codes {
					if e.Codes != nil {
						name, ok := e.Codes[c]
						if !ok {
							l.errf(file, sc.pos, "%s position %d: code %q is not in element %s's list", owner, i+1, c, p.id)
						}
						ref.Codes[c] = name
					} else {
						ref.Codes[c] = ""
					}
				}
			}
		} else {
			l.errf(file, sc.pos, "%s position %d: unknown element or composite %q", owner, i+1, p.id)
			continue
		}
		refs = append(refs, ref)
	}
	return refs, total
}

func (l *loader) composites() error {
	const file = "composites.yaml"
	var docs map[string]*located[compositeDoc]
	if err := l.read(file, &docs); err != nil {
		return err
	}
	for _, id := range sortedKeys(docs) {
		ld := docs[id]
		if _, clash := l.d.Elements[id]; clash {
			l.errf(file, ld.pos, "composite %s: id also used by an element", id)
		}
		if ld.V.Name == "" {
			l.errf(file, ld.pos, "composite %s: missing name", id)
		}
		c := &Composite{ID: id, Name: ld.V.Name}
		l.d.Composites[id] = c
		c.Components, _ = l.positions(file, "composite "+id, ld.V.Components, false)
		if len(c.Components) == 0 {
			l.errf(file, ld.pos, "composite %s: no components", id)
		}
	}
	return nil
}

// parseSyntax parses an X12 syntax note such as P0102 or L010203.
func parseSyntax(s string) (SyntaxRule, error) {
	r := SyntaxRule{Text: s}
	if len(s) < 5 || (len(s)-1)%2 != 0 || !strings.ContainsRune("PRECL", rune(s[0])) {
		return r, fmt.Errorf("syntax rule %q: want P, R, E, C or L followed by 2-digit positions", s)
	}
	r.Kind = s[0]
	for i := 1; i < len(s); i += 2 {
		n, err := strconv.Atoi(s[i : i+2])
		if err != nil || n < 1 {
			return r, fmt.Errorf("syntax rule %q: bad position %q", s, s[i:i+2])
		}
		r.Positions = append(r.Positions, n)
	}
	if r.Kind == 'L' && len(r.Positions) < 3 {
		return r, fmt.Errorf("syntax rule %q: L needs at least 3 positions", s)
	}
	r.mask = r.Mask()
	return r, nil
}

func (l *loader) segments() error {
	const file = "segments.yaml"
	var docs map[string]*located[segmentDoc]
	if err := l.read(file, &docs); err != nil {
		return err
	}
	for _, tag := range sortedKeys(docs) {
		ld := docs[tag]
		doc := &ld.V
		name, elems, syntax := doc.Name, doc.Elements, doc.Syntax
		if o := doc.override(l.version); o != nil {
			if o.Name != "" {
				name = o.Name
			}
			if o.Elements != nil {
				elems = *o.Elements
			}
			if o.Syntax != nil {
				syntax = *o.Syntax
			}
		}
		if name == "" {
			l.errf(file, ld.pos, "segment %s: missing name", tag)
		}
		if len(tag) < 2 || len(tag) > 3 || strings.ToUpper(tag) != tag {
			l.errf(file, ld.pos, "segment %s: invalid tag", tag)
		}
		s := &Segment{ID: tag, Name: name}
		var total int
		s.Elements, total = l.positions(file, "segment "+tag, elems, true)
		if total == 0 {
			l.errf(file, ld.pos, "segment %s: no elements", tag)
		}
		for _, sc := range syntax {
			r, err := parseSyntax(sc.S)
			if err != nil {
				l.errf(file, sc.pos, "segment %s: %v", tag, err)
				continue
			}
			ok, drop := true, false
			for _, p := range r.Positions {
				switch {
				case p > total:
					l.errf(file, sc.pos, "segment %s: syntax rule %s refers to position %d, segment has %d", tag, r.Text, p, total)
					ok = false
				case p > len(s.Elements):
					drop = true // position exists only in a later version
				}
			}
			if ok && !drop {
				s.Syntax = append(s.Syntax, r)
			}
		}
		l.d.Segments[tag] = s
	}
	return nil
}

func (l *loader) sets() error {
	entries, err := fs.ReadDir(l.fsys, "sets")
	if err != nil {
		return err
	}
	for _, de := range entries {
		if de.IsDir() || path.Ext(de.Name()) != ".yaml" {
			continue
		}
		file := "sets/" + de.Name()
		var doc setDoc
		if err := l.read(file, &doc); err != nil {
			return err
		}
		if doc.ID == "" || doc.Name == "" || doc.Group == "" {
			l.errf(file, pos{Line: 1}, "set needs id, name and group")
			continue
		}
		if want := doc.ID + ".yaml"; de.Name() != want {
			l.errf(file, pos{Line: 1}, "set %s must be in file sets/%s", doc.ID, want)
		}
		if len(doc.Versions) > 0 {
			for _, v := range doc.Versions {
				if !validVersion(v) {
					l.errf(file, pos{Line: 1}, "set %s: bad version %q", doc.ID, v)
				}
			}
			if !slices.Contains(doc.Versions, l.version) {
				continue
			}
		}
		if _, dup := l.d.Sets[doc.ID]; dup {
			l.errf(file, pos{Line: 1}, "set %s defined twice", doc.ID)
			continue
		}
		root := &Loop{ID: ""}
		root.Children = l.body(file, "set "+doc.ID, doc.Structure)
		if n := len(root.Children); n < 2 || root.Children[0].Loop != nil || root.Children[0].Segment.ID != "ST" ||
			root.Children[n-1].Loop != nil || root.Children[n-1].Segment.ID != "SE" {
			l.errf(file, pos{Line: 1}, "set %s: structure must start with ST and end with SE", doc.ID)
		}
		l.d.Sets[doc.ID] = &Set{
			ID:              doc.ID,
			Name:            doc.Name,
			FunctionalGroup: doc.Group,
			Version:         l.version,
			Root:            root,
			HL:              doc.HL,
		}
	}
	return nil
}

func parseMax(s string) (int, error) {
	if s == ">1" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bad max %q (want a positive number or >1)", s)
	}
	return n, nil
}

func parseUse(s string) (Usage, error) {
	switch s {
	case "M", "O":
		return Usage(s[0]), nil
	}
	return 0, fmt.Errorf("bad usage %q (want M or O)", s)
}

// body resolves a list of structure entries for the loaded version.
func (l *loader) body(file, owner string, list []entryDoc) []*Node {
	var nodes []*Node
	for _, e := range list {
		if e.loop == nil {
			f := strings.Fields(e.seg)
			if len(f) < 3 {
				l.errf(file, e.pos, "%s: segment entry %q: want \"<TAG> <M|O> <max> [since=V] [pos=N]\"", owner, e.seg)
				continue
			}
			n := &Node{}
			var err error
			if n.Usage, err = parseUse(f[1]); err != nil {
				l.errf(file, e.pos, "%s: %s: %v", owner, e.seg, err)
			}
			if n.Max, err = parseMax(f[2]); err != nil {
				l.errf(file, e.pos, "%s: %s: %v", owner, e.seg, err)
			}
			skip := false
			for _, opt := range f[3:] {
				k, v, _ := strings.Cut(opt, "=")
				switch k {
				case "since":
					if !validVersion(v) {
						l.errf(file, e.pos, "%s: %s: bad since %q", owner, e.seg, v)
					}
					skip = later(v, l.version)
				case "pos":
					n.Pos = v
				default:
					l.errf(file, e.pos, "%s: %s: unknown option %q", owner, e.seg, opt)
				}
			}
			if skip {
				continue
			}
			if n.Segment = l.d.Segments[f[0]]; n.Segment == nil {
				l.errf(file, e.pos, "%s: unknown segment %q", owner, f[0])
				continue
			}
			nodes = append(nodes, n)
			continue
		}
		lp := e.loop
		if lp.Since != "" {
			if !validVersion(lp.Since) {
				l.errf(file, e.pos, "%s: loop %s: bad since %q", owner, lp.Loop, lp.Since)
			}
			if later(lp.Since, l.version) {
				continue
			}
		}
		n := &Node{Loop: &Loop{ID: lp.Loop}, Pos: lp.Pos.S}
		var err error
		if n.Usage, err = parseUse(lp.Use); err != nil {
			l.errf(file, e.pos, "%s: loop %s: %v", owner, lp.Loop, err)
		}
		if n.Max, err = parseMax(lp.Max.S); err != nil {
			l.errf(file, e.pos, "%s: loop %s: %v", owner, lp.Loop, err)
		}
		n.Loop.Children = l.body(file, owner+" loop "+lp.Loop, lp.Body)
		if len(n.Loop.Children) == 0 {
			l.errf(file, e.pos, "%s: loop %s is empty", owner, lp.Loop)
			continue
		}
		first := n.Loop.Children[0]
		switch {
		case first.Loop != nil:
			l.errf(file, e.pos, "%s: loop %s must start with a segment", owner, lp.Loop)
			continue
		case first.Usage != Mandatory:
			l.errf(file, e.pos, "%s: loop %s: leading segment %s must have usage M", owner, lp.Loop, first.Segment.ID)
		case first.Segment.ID != lp.Loop:
			l.errf(file, e.pos, "%s: loop %s must start with segment %s", owner, lp.Loop, lp.Loop)
		}
		nodes = append(nodes, n)
	}
	return nodes
}
