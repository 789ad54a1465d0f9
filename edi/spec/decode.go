package spec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// This file holds the strict YAML decoding layer: the document shapes of the
// data files and the node-level unmarshalers that keep line numbers, so that
// every error can name its file and line.

// posError is an error at a known position of a YAML document.
type posError struct {
	line, col int
	msg       string
}

func (e *posError) Error() string { return fmt.Sprintf("[%d:%d] %s", e.line, e.col, e.msg) }

func errAt(tk *token.Token, format string, args ...any) error {
	e := &posError{msg: fmt.Sprintf(format, args...)}
	if tk != nil && tk.Position != nil {
		e.line, e.col = tk.Position.Line, tk.Position.Column
	}
	return e
}

// decodeYAML strictly decodes data (the content of file) into v: unknown keys
// and duplicate keys are errors. Errors read "file:line:col: message".
func decodeYAML(file string, data []byte, v any) error {
	if err := yaml.UnmarshalWithOptions(data, v, yaml.DisallowUnknownField()); err != nil {
		return locate(file, err)
	}
	return nil
}

// locate rewrites a decoding error as "file:line:col: message".
func locate(file string, err error) error {
	var pe *posError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d:%d: %s", file, pe.line, pe.col, pe.msg)
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Errorf("%s:%d:%d: %s", file, tk.Position.Line, tk.Position.Column, ye.GetMessage())
		}
	}
	return fmt.Errorf("%s: %v", file, err)
}

// strictNode decodes a sub-node strictly (used from node unmarshalers).
func strictNode(node ast.Node, v any) error {
	return yaml.NodeToValue(node, v, yaml.DisallowUnknownField())
}

// pos is a position in a data file.
type pos struct{ Line, Col int }

func posOf(node ast.Node) pos {
	if node == nil {
		return pos{}
	}
	tk := node.GetToken()
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

// scalar is a YAML scalar kept as its source text, with its position.
type scalar struct {
	S string
	pos
}

func (s *scalar) UnmarshalYAML(node ast.Node) error {
	s.pos = posOf(node)
	switch n := node.(type) {
	case *ast.StringNode:
		s.S = n.Value
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		s.S = n.GetToken().Value
	default:
		return errAt(node.GetToken(), "expected a scalar, got %s", node.Type())
	}
	return nil
}

// codeList is a code list: either a mapping code -> name (the name may be
// empty) or a sequence of codes. Codes must be YAML strings: a numeric-looking
// code such as 00 must be quoted, or YAML would silently turn it into 0.
type codeList struct {
	codes map[string]string
	pos
}

func (c *codeList) UnmarshalYAML(node ast.Node) error {
	c.pos = posOf(node)
	c.codes = map[string]string{}
	add := func(k ast.Node, name string) error {
		s, ok := k.(*ast.StringNode)
		if !ok {
			return errAt(k.GetToken(), "code %s must be a quoted string", k.GetToken().Value)
		}
		if s.Value == "" || strings.ContainsAny(s.Value, " \t") {
			return errAt(k.GetToken(), "invalid code %q", s.Value)
		}
		if _, dup := c.codes[s.Value]; dup {
			return errAt(k.GetToken(), "duplicate code %q", s.Value)
		}
		c.codes[s.Value] = name
		return nil
	}
	nameOf := func(v ast.Node) (string, error) {
		switch n := v.(type) {
		case nil, *ast.NullNode:
			return "", nil
		case *ast.StringNode:
			return n.Value, nil
		case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
			return n.GetToken().Value, nil
		}
		return "", errAt(v.GetToken(), "code name must be a scalar")
	}
	var pairs []*ast.MappingValueNode
	switch n := node.(type) {
	case *ast.MappingNode:
		pairs = n.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{n}
	case *ast.SequenceNode:
		for _, v := range n.Values {
			if err := add(v, ""); err != nil {
				return err
			}
		}
		return nil
	default:
		return errAt(node.GetToken(), "codes must be a mapping (code: name) or a sequence of codes")
	}
	for _, p := range pairs {
		name, err := nameOf(p.Value)
		if err != nil {
			return err
		}
		if err := add(p.Key, name); err != nil {
			return err
		}
	}
	return nil
}

// located decodes a mapping value strictly and remembers where it was.
type located[T any] struct {
	V T
	pos
}

func (l *located[T]) UnmarshalYAML(node ast.Node) error {
	l.pos = posOf(node)
	return strictNode(node, &l.V)
}

// ---- elements.yaml ----

type elementDoc struct {
	Name  string           `yaml:"name"`
	Type  string           `yaml:"type"`
	Min   *int             `yaml:"min"`
	Max   *int             `yaml:"max"`
	Codes *codeList        `yaml:"codes"`
	Over4 *elementOverride `yaml:"004010"`
	Over5 *elementOverride `yaml:"005010"`
}

type elementOverride struct {
	Name     string    `yaml:"name"`
	Type     string    `yaml:"type"`
	Min      *int      `yaml:"min"`
	Max      *int      `yaml:"max"`
	Codes    *codeList `yaml:"codes"`
	AddCodes *codeList `yaml:"add_codes"`
}

func (d *elementDoc) override(version string) *elementOverride {
	switch version {
	case "004010":
		return d.Over4
	case "005010":
		return d.Over5
	}
	return nil
}

// ---- composites.yaml ----

type compositeDoc struct {
	Name       string   `yaml:"name"`
	Components []scalar `yaml:"components"`
}

// ---- segments.yaml ----

type segmentDoc struct {
	Name     string           `yaml:"name"`
	Elements []scalar         `yaml:"elements"`
	Syntax   []scalar         `yaml:"syntax"`
	Over4    *segmentOverride `yaml:"004010"`
	Over5    *segmentOverride `yaml:"005010"`
}

// segmentOverride replaces the name, element list or syntax notes of a
// segment in one version (a nil field keeps the base value).
type segmentOverride struct {
	Name     string    `yaml:"name"`
	Elements *[]scalar `yaml:"elements"`
	Syntax   *[]scalar `yaml:"syntax"`
}

func (d *segmentDoc) override(version string) *segmentOverride {
	switch version {
	case "004010":
		return d.Over4
	case "005010":
		return d.Over5
	}
	return nil
}

// ---- sets/*.yaml ----

type setDoc struct {
	ID        string     `yaml:"id"`
	Name      string     `yaml:"name"`
	Group     string     `yaml:"group"`
	HL        bool       `yaml:"hl"`
	Versions  []string   `yaml:"versions"`
	Structure []entryDoc `yaml:"structure"`
}

// entryDoc is one structure entry: a segment string ("N1 M 1") or a loop.
type entryDoc struct {
	seg  string
	loop *loopDoc
	pos
}

type loopDoc struct {
	Loop  string     `yaml:"loop"`
	Use   string     `yaml:"use"`
	Max   scalar     `yaml:"max"`
	Since string     `yaml:"since"`
	Pos   scalar     `yaml:"pos"`
	Body  []entryDoc `yaml:"body"`
}

func (e *entryDoc) UnmarshalYAML(node ast.Node) error {
	e.pos = posOf(node)
	switch n := node.(type) {
	case *ast.StringNode:
		e.seg = n.Value
		return nil
	case *ast.MappingNode, *ast.MappingValueNode:
		e.loop = &loopDoc{}
		return strictNode(node, e.loop)
	}
	return errAt(node.GetToken(), "structure entry must be a segment string or a loop mapping, got %s", node.Type())
}
