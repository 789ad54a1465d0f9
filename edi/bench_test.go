package edi_test

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/internal/x12gen"
)

// The engine's speed on generated 850 and 856 files held in memory, beside
// the two baselines of `make bench` (the IndexByte terminator count and the
// naive split) measured in the same run, so that ratios can be read off one
// `go test ./edi -bench . -benchtime 20x` on a noisy machine. `make bench`
// (whole files, a process per run) gives the figures in the README.

var benchFiles sync.Map // tx -> []byte

func benchFile(b *testing.B, tx string) []byte {
	if v, ok := benchFiles.Load(tx); ok {
		return v.([]byte)
	}
	cfg := x12gen.Default()
	cfg.TxTypes = []string{tx}
	cfg.Size = 8 << 20
	var buf bytes.Buffer
	if _, err := x12gen.Write(&buf, cfg); err != nil {
		b.Fatal(err)
	}
	benchFiles.Store(tx, buf.Bytes())
	return buf.Bytes()
}

func benchEach(b *testing.B, run func(b *testing.B, data []byte)) {
	for _, tx := range []string{"850", "856"} {
		b.Run(tx, func(b *testing.B) {
			data := benchFile(b, tx)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				run(b, data)
			}
		})
	}
}

func BenchmarkFloor(b *testing.B) {
	benchEach(b, func(b *testing.B, data []byte) {
		n := 0
		for d := data; ; n++ {
			i := bytes.IndexByte(d, '~')
			if i < 0 {
				break
			}
			d = d[i+1:]
		}
		if n == 0 {
			b.Fatal("no segments")
		}
	})
}

func BenchmarkNaive(b *testing.B) {
	benchEach(b, func(b *testing.B, data []byte) {
		var total int
		for d := data; len(d) > 0; {
			i := bytes.IndexByte(d, '~')
			if i < 0 {
				break
			}
			for _, p := range bytes.Split(bytes.TrimLeft(d[:i], "\r\n"), []byte{'*'}) {
				total += len(p)
			}
			d = d[i+1:]
		}
		if total == 0 {
			b.Fatal("no data")
		}
	})
}

func BenchmarkTokenize(b *testing.B) {
	benchEach(b, func(b *testing.B, data []byte) {
		r := edi.NewReader(bytes.NewReader(data))
		var total int
		for {
			seg, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			for i := 1; i <= seg.Len(); i++ {
				total += len(seg.Element(i))
			}
		}
		if total == 0 {
			b.Fatal("no data")
		}
	})
}

// BenchmarkProcess is envelopes and validation without trees.
func BenchmarkProcess(b *testing.B) { benchProcess(b, false) }

// BenchmarkTree is the full parse: envelopes, validation and loop trees.
func BenchmarkTree(b *testing.B) { benchProcess(b, true) }

func benchProcess(b *testing.B, tree bool) {
	benchEach(b, func(b *testing.B, data []byte) {
		sets := 0
		err := edi.Process(bytes.NewReader(data), edi.Options{Tree: tree, OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
			if s.Status != "A" || (s.Tree == nil) == tree {
				b.Fatalf("set %+v", s.SetResult)
			}
			sets++
		}})
		if err != nil || sets == 0 {
			b.Fatal(err, sets)
		}
	})
}
