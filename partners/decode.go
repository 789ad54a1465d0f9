package partners

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// This file holds the strict YAML layer. partner.yaml is parsed into goccy's
// AST and decoded here (not with yaml.Unmarshal) so that one pass reports
// every unknown key, duplicate key and wrongly typed value of a file — not
// only the first — and remembers the line and column of every field, which
// the validation in build.go uses to point at the value it complains about.

// pos is a 1-based line and column in a partner file.
type pos struct{ line, col int }

// decoder decodes one YAML document into the raw (*Doc) structs below.
type decoder struct {
	file    string
	pos     map[string]pos  // field path ("inbound.sftp[0].user") → position of its value
	bad     map[string]bool // fields whose value could not be decoded (already reported)
	anchors map[string]ast.Node
	errs    []error
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: map[string]pos{}, bad: map[string]bool{}, anchors: map[string]ast.Node{}}
}

// FieldError is one problem in a partner file: where it is, which field, and
// what is wrong. Error() reads "file:line:col: field: message".
type FieldError struct {
	File   string
	Line   int // 1-based; 0 when the problem is not at a position (e.g. a missing file)
	Column int
	Field  string // dotted path such as "inbound.polls[0].schedule"; "" for the file itself
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// at returns the position of the field at path, or of its nearest parent
// that has one (a missing field is reported where its parent is).
func (d *decoder) at(path string) pos {
	for {
		if p, ok := d.pos[path]; ok {
			return p
		}
		if path == "" {
			return pos{1, 1}
		}
		path = parentPath(path)
	}
}

// has reports whether the field at path was written in the file (with a
// value of the right type: a badly typed value is reported once, by the
// decoder, and otherwise treated as absent).
func (d *decoder) has(path string) bool {
	_, ok := d.pos[path]
	return ok && !d.bad[path]
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// errf records a problem with the field at path, unless the field's value
// was already reported as malformed.
func (d *decoder) errf(path string, format string, args ...any) {
	if d.bad[path] {
		return
	}
	p := d.at(path)
	d.errs = append(d.errs, &FieldError{File: d.file, Line: p.line, Column: p.col, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) errNode(n ast.Node, path, format string, args ...any) {
	d.bad[path] = true
	p := posOf(n)
	if p.line == 0 {
		p = d.at(path)
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: p.line, Column: p.col, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func posOf(n ast.Node) pos {
	switch m := n.(type) {
	case nil:
		return pos{}
	case *ast.MappingNode:
		if !m.IsFlowStyle && len(m.Values) > 0 {
			return posOf(m.Values[0].Key) // a block mapping is where its first key is
		}
	case *ast.MappingValueNode:
		return posOf(m.Key)
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return pos{tk.Position.Line, tk.Position.Column}
	}
	return pos{}
}

// parse decodes data (the content of d.file) into v, a pointer to a struct.
// It returns false when the file is not YAML at all; decoding problems are
// recorded in d.errs and decoding goes on past them.
func (d *decoder) parse(data []byte, v any) bool {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			p := ye.GetToken().Position
			d.errs = append(d.errs, &FieldError{File: d.file, Line: p.Line, Column: p.Column, Msg: ye.GetMessage()})
		} else {
			d.errs = append(d.errs, &FieldError{File: d.file, Msg: err.Error()})
		}
		return false
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			d.errNode(doc.Body, "", "a partner file holds one YAML document")
			return false
		}
		body = doc.Body
	}
	if body == nil {
		d.errs = append(d.errs, &FieldError{File: d.file, Msg: "empty file"})
		return false
	}
	d.decode(body, "", reflect.ValueOf(v).Elem())
	return true
}

// resolve strips tags and anchors and follows aliases.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 32 {
		switch x := n.(type) {
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			if x.Name != nil {
				d.anchors[x.Name.GetToken().Value] = x.Value
			}
			n = x.Value
		case *ast.AliasNode:
			if x.Value == nil {
				return n
			}
			t, ok := d.anchors[x.Value.GetToken().Value]
			if !ok {
				return n
			}
			n = t
		default:
			return n
		}
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n ast.Node) bool {
	_, ok := n.(*ast.NullNode)
	return n == nil || ok
}

// decode decodes node into v (a settable value of a raw struct, slice,
// string, bool or int) and records the node's position under path.
func (d *decoder) decode(node ast.Node, path string, v reflect.Value) {
	node = d.resolve(node)
	if p := posOf(node); p.line > 0 {
		d.pos[path] = p
	}
	if isNull(node) {
		return // an empty value is the same as leaving the key out
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(node, path, v.Elem())
	case reflect.Struct:
		d.decodeStruct(node, path, v)
	case reflect.Slice:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			d.errNode(node, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
		for i, e := range seq.Values {
			d.decode(e, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		s, ok := scalarText(node)
		if !ok {
			d.errNode(node, path, "must be a single value, not a %s", kindName(node))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := node.(*ast.BoolNode)
		if !ok {
			d.errNode(node, path, "must be true or false")
			return
		}
		v.SetBool(b.Value)
	case reflect.Int:
		n, ok := node.(*ast.IntegerNode)
		var i int64
		var err error
		if ok {
			i, err = strconv.ParseInt(fmt.Sprint(n.Value), 10, 0)
		}
		if !ok || err != nil {
			d.errNode(node, path, "must be a whole number")
			return
		}
		v.SetInt(i)
	default:
		panic("partners: cannot decode into " + v.Type().String())
	}
}

// scalarText is the text of a scalar as written: a YAML integer such as 01
// or 005010 keeps its leading zeros (X12 codes are strings).
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return x.GetToken().Value, true
	}
	return "", false
}

func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	case *ast.SequenceNode:
		return "list"
	}
	return "single value"
}

// secretHints names the inline keys people write by habit and the
// reference keys to use instead.
var secretHints = []string{"password", "password_hash", "private_key", "passphrase", "access_key", "secret_key", "secret", "token"}

func (d *decoder) decodeStruct(node ast.Node, path string, v reflect.Value) {
	var pairs []*ast.MappingValueNode
	switch m := node.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		d.errNode(node, path, "must be a mapping (key: value), not a %s", kindName(node))
		return
	}
	fields := structFields(v.Type())
	for _, p := range pairs {
		if p.Key.IsMergeKey() {
			d.errNode(p.Key, path, "merge keys (<<) are not supported")
			continue
		}
		key, _ := scalarText(d.resolve(p.Key))
		fp := join(path, key)
		idx, ok := fields[key]
		if !ok {
			d.errNode(p.Key, fp, "%s", unknownKey(key, fields))
			continue
		}
		d.decode(p.Value, fp, v.FieldByIndex(idx))
	}
}

func unknownKey(key string, fields map[string][]int) string {
	var alts []string
	for k := range fields {
		if rest, ok := strings.CutPrefix(k, key+"_"); ok && (rest == "env" || rest == "file" || strings.HasSuffix(rest, "_env") || strings.HasSuffix(rest, "_file")) {
			alts = append(alts, k)
		}
	}
	slices.Sort(alts)
	if len(alts) > 0 || slices.Contains(secretHints, key) {
		msg := "unknown key: secrets are never written in partner files"
		if len(alts) > 0 {
			msg += "; reference it with " + strings.Join(alts, " or ")
		}
		return msg
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestD := "", 3
	for _, k := range names {
		if dd := editDistance(key, k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key (did you mean %s?)", best)
	}
	return "unknown key (known: " + strings.Join(names, ", ") + ")"
}

// structFields maps the yaml keys of a raw struct to field indexes,
// flattening fields tagged ",inline".
func structFields(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == ",inline" {
			for k, idx := range structFields(f.Type) {
				m[k] = append([]int{i}, idx...)
			}
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = []int{i}
	}
	return m
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ---- raw document shapes (partner.yaml as written) ----

type partnerDoc struct {
	ID        string        `yaml:"id"`
	Name      string        `yaml:"name"`
	Status    string        `yaml:"status"`
	X12       *x12Doc       `yaml:"x12"`
	Acks      *acksDoc      `yaml:"acks"`
	Inbound   *inboundDoc   `yaml:"inbound"`
	Outbound  *outboundDoc  `yaml:"outbound"`
	Documents []documentDoc `yaml:"documents"`
	Overlays  []overlayDoc  `yaml:"overlays"`
}

type isaDoc struct {
	Qualifier string `yaml:"qualifier"`
	ID        string `yaml:"id"`
}

type x12Doc struct {
	ISA        *isaDoc        `yaml:"isa"`
	GSID       string         `yaml:"gs_id"`
	Version    string         `yaml:"version"`
	Usage      string         `yaml:"usage"`
	OurISA     *isaDoc        `yaml:"our_isa"`
	OurGSID    string         `yaml:"our_gs_id"`
	Delimiters *delimitersDoc `yaml:"delimiters"`
}

type delimitersDoc struct {
	Element    string `yaml:"element"`
	Component  string `yaml:"component"`
	Repetition string `yaml:"repetition"`
	Segment    string `yaml:"segment"`
	Newline    bool   `yaml:"newline"`
}

type acksDoc struct {
	Functional      string `yaml:"functional"`
	TA1             string `yaml:"ta1"`
	DuplicateWindow string `yaml:"duplicate_window"`
	ExpectAckWithin string `yaml:"expect_ack_within"`
}

type inboundDoc struct {
	SFTP  []sftpUserDoc `yaml:"sftp"`
	Polls []pollDoc     `yaml:"polls"`
}

type sftpUserDoc struct {
	User             string   `yaml:"user"`
	PasswordHashEnv  string   `yaml:"password_hash_env"`
	PasswordHashFile string   `yaml:"password_hash_file"`
	PublicKeys       []string `yaml:"public_keys"`
	PublicKeysFile   string   `yaml:"public_keys_file"`
	AllowedNetworks  []string `yaml:"allowed_networks"`
	LegacyAlgorithms bool     `yaml:"legacy_algorithms"`
	MaxSessions      int      `yaml:"max_sessions"`
}

// remoteDoc is a server we connect to (poll source or push destination).
type remoteDoc struct {
	URL            string `yaml:"url"`
	Username       string `yaml:"username"`
	PasswordEnv    string `yaml:"password_env"`
	PasswordFile   string `yaml:"password_file"`
	PrivateKeyEnv  string `yaml:"private_key_env"`
	PrivateKeyFile string `yaml:"private_key_file"`
	HostKey        string `yaml:"host_key"`
	KnownHostsFile string `yaml:"known_hosts_file"`
	CAFile         string `yaml:"ca_file"`
	AccessKeyEnv   string `yaml:"access_key_env"`
	AccessKeyFile  string `yaml:"access_key_file"`
	SecretKeyEnv   string `yaml:"secret_key_env"`
	SecretKeyFile  string `yaml:"secret_key_file"`
	Region         string `yaml:"region"`
	Endpoint       string `yaml:"endpoint"`
}

type pollDoc struct {
	Name          string `yaml:"name"`
	remoteDoc     `yaml:",inline"`
	Schedule      string `yaml:"schedule"`
	Timezone      string `yaml:"timezone"`
	Jitter        string `yaml:"jitter"`
	Pattern       string `yaml:"pattern"`
	StableFor     string `yaml:"stable_for"`
	TriggerSuffix string `yaml:"trigger_suffix"`
	AfterFetch    string `yaml:"after_fetch"`
	MaxFiles      int    `yaml:"max_files"`
}

type outboundDoc struct {
	Channel   string `yaml:"channel"`
	remoteDoc `yaml:",inline"`
	Naming    string `yaml:"naming"`
}

type documentDoc struct {
	X12       string `yaml:"x12"`
	CSV       string `yaml:"csv"`
	Direction string `yaml:"direction"`
	Match     string `yaml:"match"`
	Map       string `yaml:"map"`
	ERP       string `yaml:"erp"`
}

type overlayDoc struct {
	Set   string    `yaml:"set"`
	Rules []ruleDoc `yaml:"rules"`
}

type ruleDoc struct {
	Segment   string   `yaml:"segment"`
	Loop      string   `yaml:"loop"`
	Element   int      `yaml:"element"`
	Component int      `yaml:"component"`
	Usage     string   `yaml:"usage"`
	Min       int      `yaml:"min"`
	Max       int      `yaml:"max"`
	Codes     []string `yaml:"codes"`
}
