package spec

import (
	"fmt"
	"maps"
	"slices"
)

// String returns the requirement designator letter ("M", "O", "X", "N").
func (u Usage) String() string {
	if u == 0 {
		return ""
	}
	return string(rune(u))
}

// ID is the element or composite ID of the position ("128", "C040").
func (r *ElementRef) ID() string {
	if r.Composite != nil {
		return r.Composite.ID
	}
	if r.Element != nil {
		return r.Element.ID
	}
	return ""
}

// AllowedCodes returns the closed code list in force at this position (the
// position's restriction if any, else the element's list), or nil when any
// value is allowed.
func (r *ElementRef) AllowedCodes() map[string]string {
	if r.Codes != nil {
		return r.Codes
	}
	if r.Element != nil {
		return r.Element.Codes
	}
	return nil
}

// Clone returns a deep copy of the set: its structure nodes and loops, and
// for every segment node a private copy of the Segment, its ElementRefs
// (with their code restrictions) and the Composites they reference. Element
// definitions (and their dictionary code lists) stay shared and must be
// treated as read-only; Dictionary.Apply copies an Element before changing it.
func (s *Set) Clone() *Set {
	if s == nil {
		return nil
	}
	c := *s
	c.Root = cloneLoop(s.Root)
	return &c
}

func cloneLoop(l *Loop) *Loop {
	if l == nil {
		return nil
	}
	c := &Loop{ID: l.ID, Children: make([]*Node, len(l.Children))}
	for i, n := range l.Children {
		cn := *n
		if n.Loop != nil {
			cn.Loop = cloneLoop(n.Loop)
		}
		if n.Segment != nil {
			cn.Segment = cloneSegment(n.Segment)
		}
		c.Children[i] = &cn
	}
	return c
}

func cloneSegment(s *Segment) *Segment {
	c := &Segment{ID: s.ID, Name: s.Name, Elements: make([]*ElementRef, len(s.Elements))}
	for i, r := range s.Elements {
		c.Elements[i] = cloneRef(r)
	}
	for _, r := range s.Syntax {
		r.Positions = slices.Clone(r.Positions)
		c.Syntax = append(c.Syntax, r)
	}
	return c
}

func cloneRef(r *ElementRef) *ElementRef {
	c := *r
	c.Codes = maps.Clone(r.Codes)
	if r.Composite != nil {
		cc := &Composite{ID: r.Composite.ID, Name: r.Composite.Name, Components: make([]*ElementRef, len(r.Composite.Components))}
		for i, comp := range r.Composite.Components {
			cc.Components[i] = cloneRef(comp)
		}
		c.Composite = cc
	}
	return &c
}

// Overlay is a partner implementation guide's adjustment of a standard
// transaction set: a list of rules applied to a copy of the set.
type Overlay struct {
	Set   string // transaction set ID, e.g. "850"
	Rules []OverlayRule
}

// OverlayRule changes every occurrence of Segment in the set (optionally only
// those inside the loop with ID Loop). With Element == 0 the rule applies to
// the segment node itself (Usage, Max = max use); otherwise to element
// position Element (1-based), or to component Component of the composite at
// that position (Usage, Min/Max length, Codes).
type OverlayRule struct {
	Segment   string
	Loop      string // optional: only segments whose nearest enclosing loop has this ID
	Element   int
	Component int
	Usage     Usage    // 0: unchanged; NotUsed forbids the segment or element
	Min, Max  int      // 0: unchanged
	Codes     []string // restrict the code list to these codes
}

// Apply returns a copy of the set named by o with o's rules applied. The
// dictionary (and every set obtained from it) is left unchanged.
func (d *Dictionary) Apply(o Overlay) (*Set, error) {
	base := d.Set(o.Set)
	if base == nil {
		return nil, fmt.Errorf("overlay: set %s is not defined in version %s", o.Set, d.Version)
	}
	s := base.Clone()
	for i, r := range o.Rules {
		if err := applyRule(s.Root, r); err != nil {
			return nil, fmt.Errorf("overlay %s rule %d (%s): %w", o.Set, i+1, r.Segment, err)
		}
	}
	s.Root.compile()
	return s, nil
}

func applyRule(root *Loop, r OverlayRule) error {
	var targets []*Node
	var walk func(l *Loop)
	walk = func(l *Loop) {
		for _, n := range l.Children {
			if n.Loop != nil {
				walk(n.Loop)
			} else if n.Segment.ID == r.Segment && (r.Loop == "" || r.Loop == l.ID) {
				targets = append(targets, n)
			}
		}
	}
	walk(root)
	if len(targets) == 0 {
		return fmt.Errorf("segment %s not found in the set", r.Segment)
	}
	switch r.Usage {
	case 0, Mandatory, Optional, Conditional, NotUsed:
	default:
		return fmt.Errorf("invalid usage %q", r.Usage)
	}
	for _, n := range targets {
		if r.Element == 0 {
			if r.Component != 0 || r.Min != 0 || len(r.Codes) > 0 {
				return fmt.Errorf("segment-level rule only takes usage and max")
			}
			if r.Usage == Conditional {
				return fmt.Errorf("segment usage must be M, O or N")
			}
			if r.Usage != 0 {
				n.Usage = r.Usage
			}
			if r.Max != 0 {
				n.Max = r.Max
			}
			continue
		}
		if r.Element < 1 || r.Element > len(n.Segment.Elements) {
			return fmt.Errorf("segment %s has no element %d", r.Segment, r.Element)
		}
		ref := n.Segment.Elements[r.Element-1]
		if r.Component != 0 {
			if ref.Composite == nil {
				return fmt.Errorf("%s%02d is not a composite", r.Segment, r.Element)
			}
			if r.Component < 1 || r.Component > len(ref.Composite.Components) {
				return fmt.Errorf("%s%02d has no component %d", r.Segment, r.Element, r.Component)
			}
			ref = ref.Composite.Components[r.Component-1]
		}
		if err := applyToRef(ref, r); err != nil {
			return fmt.Errorf("%s%02d: %w", r.Segment, r.Element, err)
		}
	}
	return nil
}

func applyToRef(ref *ElementRef, r OverlayRule) error {
	if r.Usage != 0 {
		ref.Usage = r.Usage
	}
	if r.Min != 0 || r.Max != 0 {
		if ref.Element == nil {
			return fmt.Errorf("length applies to a simple element, not composite %s", ref.ID())
		}
		e := *ref.Element // copy on write: the dictionary element is shared
		if r.Min != 0 {
			e.Min = r.Min
		}
		if r.Max != 0 {
			e.Max = r.Max
		}
		if e.Min < 1 || e.Max < e.Min {
			return fmt.Errorf("invalid length %d-%d", e.Min, e.Max)
		}
		ref.Element = &e
	}
	if len(r.Codes) > 0 {
		if ref.Element == nil {
			return fmt.Errorf("codes apply to a simple element, not composite %s", ref.ID())
		}
		allowed := ref.AllowedCodes()
		codes := make(map[string]string, len(r.Codes))
		for _, c := range r.Codes {
			name, ok := allowed[c]
			if allowed != nil && !ok {
				return fmt.Errorf("code %q is not allowed by element %s", c, ref.Element.ID)
			}
			codes[c] = name
		}
		ref.Codes = codes
	}
	return nil
}
