package mapping

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// ynode is a YAML node with its position, in document order. Mapping specs
// are compiled from these (rather than decoded into structs) so that every
// error can name the file and line of the key it is about, and unknown keys
// are caught where they stand.
type ynode struct {
	kind   byte // 's' scalar, 'm' mapping, 'l' list, 'n' null
	line   int
	col    int
	str    string
	keys   []string
	vals   []*ynode
	quoted bool
}

func (n *ynode) get(key string) *ynode {
	if n == nil || n.kind != 'm' {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

func parseYAML(data []byte) (*ynode, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, err
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil, fmt.Errorf("expected exactly one YAML document")
	}
	return convert(f.Docs[0].Body)
}

func convert(n ast.Node) (*ynode, error) {
	tk := n.GetToken()
	y := &ynode{}
	if tk != nil && tk.Position != nil {
		y.line, y.col = tk.Position.Line, tk.Position.Column
	}
	switch v := n.(type) {
	case *ast.MappingNode:
		y.kind = 'm'
		for _, mv := range v.Values {
			if err := addPair(y, mv); err != nil {
				return nil, err
			}
		}
	case *ast.MappingValueNode:
		y.kind = 'm'
		if err := addPair(y, v); err != nil {
			return nil, err
		}
	case *ast.SequenceNode:
		y.kind = 'l'
		for _, e := range v.Values {
			c, err := convert(e)
			if err != nil {
				return nil, err
			}
			y.vals = append(y.vals, c)
		}
	case *ast.NullNode:
		y.kind = 'n'
	case *ast.LiteralNode:
		y.kind = 's'
		y.str = v.Value.Value
	case *ast.StringNode:
		y.kind, y.str = 's', v.Value
		y.quoted = tk != nil && (strings.HasPrefix(tk.Origin, "'") || strings.HasPrefix(strings.TrimSpace(tk.Origin), "\"") || strings.HasPrefix(strings.TrimSpace(tk.Origin), "'"))
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		y.kind, y.str = 's', tk.Value
	case *ast.TagNode:
		return nil, fmt.Errorf("%d:%d: YAML tags are not supported", y.line, y.col)
	case *ast.AnchorNode, *ast.AliasNode:
		return nil, fmt.Errorf("%d:%d: YAML anchors and aliases are not supported in mapping specs", y.line, y.col)
	default:
		return nil, fmt.Errorf("%d:%d: unsupported YAML node %T", y.line, y.col, n)
	}
	return y, nil
}

func addPair(y *ynode, mv *ast.MappingValueNode) error {
	kt := mv.Key.GetToken()
	key := kt.Value
	for _, k := range y.keys {
		if k == key {
			return fmt.Errorf("%d:%d: duplicate key %q", kt.Position.Line, kt.Position.Column, key)
		}
	}
	v, err := convert(mv.Value)
	if err != nil {
		return err
	}
	if v.kind == 'n' || v.line == 0 {
		v.line, v.col = kt.Position.Line, kt.Position.Column
	}
	y.keys = append(y.keys, key)
	y.vals = append(y.vals, v)
	return nil
}
