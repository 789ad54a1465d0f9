package edi

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/edigw/edigw/internal/x12gen"
)

// The block masks agree with a byte loop on random bytes, with delimiters
// drawn from the usual ones, the binary ones and any byte at all.
func TestBlockMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	delims := []byte{'*', '~', ':', '^', '>', '|', '\n', 0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0x00, 0xFF, 0x7F, 0x20}
	buf := make([]byte, 64+7)
	for round := range 20000 {
		for i := range buf {
			switch rng.IntN(4) {
			case 0:
				buf[i] = byte(rng.IntN(256))
			default:
				buf[i] = delims[rng.IntN(len(delims))]
			}
		}
		pick := func() byte {
			if rng.IntN(3) == 0 {
				return byte(rng.IntN(256))
			}
			return delims[rng.IntN(len(delims))]
		}
		sep, term, comp, rep := pick(), pick(), pick(), pick()
		p := &buf[round%8] // unaligned starts too
		s1, t1 := sepMasks64(p, sep, term)
		s2, t2 := masks64Go(p, sep, term)
		if s1 != s2 || t1 != t2 {
			t.Fatalf("sepMasks64(%q, %q): %x %x, want %x %x", sep, term, s1, t1, s2, t2)
		}
		s1, t1, o1 := plainMasks64(p, sep, term, comp, rep)
		s2, t2, o2 := plainMasks64Go(p, sep, term, comp, rep)
		if s1 != s2 || t1 != t2 || o1 != o2 {
			t.Fatalf("plainMasks64(%q, %q, %q, %q): %x %x %x, want %x %x %x", sep, term, comp, rep, s1, t1, o1, s2, t2, o2)
		}
	}
}

// Segment after segment through one buffer, as Next reads them, the
// structural index finds what a byte loop finds: the terminator, the
// separators before it and whether the segment is plain, from any start and
// for any length of buffer (whole blocks only).
func TestIndexMatchesByteLoops(t *testing.T) {
	asm := useIndexAsm
	defer func() { useIndexAsm = asm }()
	for _, useIndexAsm = range []bool{false, asm} {
		testIndex(t)
	}
}

func testIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("AB01*~:^ \x00\x1f\x7f\xff")
	d := Delimiters{Element: '*', Component: ':', Repetition: '^', Segment: '~'}
	for iter := 0; iter < 3000; iter++ {
		buf := make([]byte, 64+rng.IntN(600))
		if iter%100 == 0 {
			buf = make([]byte, indexChunk+64+rng.IntN(600)) // more than one index
		}
		for i := range buf {
			switch {
			case rng.IntN(40) == 0:
				buf[i] = '~'
			case rng.IntN(6) == 0:
				buf[i] = '*'
			case rng.IntN(4) == 0:
				buf[i] = alphabet[rng.IntN(len(alphabet))]
			default:
				buf[i] = 'A' + byte(rng.IntN(26))
			}
		}
		for _, plain := range []bool{false, true} {
			r := &Reader{buf: buf, end: len(buf), MaxSegment: DefaultMaxSegment, delim: d, findPlain: plain}
			r.beg = rng.IntN(8)
			for r.beg < len(buf) {
				ok := (r.ti < len(r.tix) || r.index()) && (r.beg == r.ixNext || r.resync())
				term := bytes.IndexByte(buf[r.beg:], '~')
				if !ok {
					// Allowed only when the terminator is not in a whole block.
					if term >= 0 && (r.beg+term)&^63+64 <= len(buf) {
						t.Fatalf("iter %d: missed the terminator at %d (segment from %d, buffer %d)", iter, r.beg+term, r.beg, len(buf))
					}
					break
				}
				tx := r.tix[r.ti]
				k := int(tx >> 1)
				ends := r.idx[r.ip : k+1]
				e := int(ends[len(ends)-1])
				r.ti++
				r.ip = k + 1
				if e != r.beg+term {
					t.Fatalf("iter %d: end %d, want %d", iter, e, r.beg+term)
				}
				var want []int32
				isPlain := true
				for i, c := range buf[r.beg:e] {
					if c == '*' {
						want = append(want, int32(r.beg+i))
					}
					if c == ':' || c == '^' || c < 0x20 || c > 0x7e {
						isPlain = false
					}
				}
				want = append(want, int32(e))
				if !slices.Equal(ends, want) {
					t.Fatalf("iter %d: segment %q: ends %v, want %v", iter, buf[r.beg:e], ends, want)
				}
				if plain && (tx&1 == 0) != isPlain {
					t.Fatalf("iter %d: segment %q: plain %v, want %v", iter, buf[r.beg:e], tx&1 == 0, isPlain)
				}
				if !plain && tx&1 == 0 {
					t.Fatalf("iter %d: segment %q: plain without findPlain", iter, buf[r.beg:e])
				}
				r.beg, r.ixNext = e+1, e+1
				// Now and then skip a few bytes, as whitespace is skipped.
				if rng.IntN(10) == 0 {
					r.beg += rng.IntN(3)
				}
			}
		}
	}
}

// The reader gives the same segments (bytes, elements, plain, position)
// with the assembly index and with the Go loop, on the test files and on
// generated ones with other delimiters and line breaks, read whole and in
// short reads.
func TestReaderSameWithoutIndexAsm(t *testing.T) {
	inputs := map[string][]byte{}
	for _, dir := range []string{"testdata/valid", "testdata/defects", "testdata/public"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.edi"))
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			inputs[name] = data
		}
	}
	for i, cfg := range []func(*x12gen.Config){
		func(c *x12gen.Config) {},
		func(c *x12gen.Config) { c.EOL = "\r\n" },
		func(c *x12gen.Config) { c.Elem, c.Seg, c.TxTypes = '|', '\n', []string{"856"} },
	} {
		c := x12gen.Default()
		c.Size = 200_000
		cfg(&c)
		var buf bytes.Buffer
		if _, err := x12gen.Write(&buf, c); err != nil {
			t.Fatal(err)
		}
		inputs[fmt.Sprint("generated ", i)] = buf.Bytes()
	}
	type seg struct {
		raw   string
		elems []string
		plain bool
		pos   Position
	}
	read := func(in io.Reader) ([]seg, error) {
		rd := NewReader(in)
		rd.findPlain = true
		var segs []seg
		for {
			s, err := rd.Next()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				return segs, err
			}
			x := seg{raw: string(s.Raw()), plain: s.plain, pos: s.Pos}
			for e := 0; e <= s.Len(); e++ {
				x.elems = append(x.elems, string(s.Element(e)))
			}
			segs = append(segs, x)
		}
	}
	asm := useIndexAsm
	defer func() { useIndexAsm = asm }()
	for name, data := range inputs {
		useIndexAsm = asm
		want, wantErr := read(bytes.NewReader(data))
		useIndexAsm = false
		for _, in := range []io.Reader{bytes.NewReader(data), iotest.HalfReader(bytes.NewReader(data))} {
			got, err := read(in)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: the Go index gives %d segments (%v), the assembly %d (%v)", name, len(got), err, len(want), wantErr)
			}
		}
	}
}
