package mapping

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Marshal renders a canonical document as compact JSON with sorted keys,
// byte-for-byte what encoding/json writes for doc.Map(), without
// reflection: the gateway renders every mapped document, and reflection
// cost more than the mapping itself.
func Marshal(doc Document) ([]byte, error) {
	t := doc.t
	switch {
	case t == nil:
		return []byte("{}"), nil
	case t.root == nil:
		return appendValue(make([]byte, 0, 2048), t.generic)
	}
	b, err := t.appendObject(make([]byte, 0, max(2048, int(t.hints.json.Load()))), t.root, 0)
	if err == nil {
		t.hints.json.Store(int32(min(len(b), maxJSONHint)))
	}
	return b, err
}

// appendObject writes a mapped object, its keys escaped and sorted at load.
func (t *tree) appendObject(b []byte, sh *shape, off int) ([]byte, error) {
	b = append(b, '{')
	first := true
	for _, i := range sh.sorted {
		v := &t.vals[off+i]
		if v.kind == vAbsent {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		f := sh.fields[i]
		b = append(b, f.key...)
		var err error
		switch v.kind {
		case vString:
			b = appendString(b, t.str(v))
		case vNumber, vFloatText: // decimal text, already as encoding/json writes it
			b = append(b, t.bytes(v)...)
		case vObject:
			b, err = t.appendObject(b, f.object, int(v.off()))
		case vList:
			b = append(b, '[')
			for j, item := range t.vals[v.off() : v.off()+v.n()] {
				if j > 0 {
					b = append(b, ',')
				}
				if b, err = t.appendObject(b, f.object, int(item.off())); err != nil {
					return nil, err
				}
			}
			b = append(b, ']')
		case vInt:
			b = strconv.AppendInt(b, int64(v.bits), 10)
		case vBool:
			b = strconv.AppendBool(b, v.bits == 1)
		case vFloat:
			b, err = appendFloat(b, math.Float64frombits(v.bits))
		case vAny:
			b, err = appendValue(b, t.anys[v.off()])
		}
		if err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case float64:
		return appendFloat(b, x)
	case json.Number:
		return append(b, x...), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	j, err := json.Marshal(v) // anything an expression returned
	return append(b, j...), err
}

// appendFloat formats like encoding/json, and fails where it fails.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		_, err := json.Marshal(f) // the same error encoding/json gives
		return nil, err
	}
	abs := math.Abs(f)
	fmtc := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmtc = 'e'
	}
	b = strconv.AppendFloat(b, f, fmtc, -1, 64)
	if fmtc == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// plainByte marks the bytes appendString writes as they are: printable
// ASCII but for ", \, <, > and &.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString escapes like encoding/json (HTML-safe: <, >, & as \u00XX).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	i := 0
	for i < len(s) && plainByte[s[i]] {
		i++
	}
	if i == len(s) { // most values: nothing to escape
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
