package x12bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edigw/edigw/internal/x12gen"
)

// The baselines count what the generator wrote, and Measure prints the
// harness's result line.
func TestBaselinesCountTheCorpus(t *testing.T) {
	cfg := x12gen.Default()
	cfg.TxTypes, cfg.Size = []string{"856"}, 100_000
	path := filepath.Join(t.TempDir(), "856.x12")
	meta, err := x12gen.Generate(cfg, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer     string
		run      func(*os.File, *Result) error
		elements int64
	}{{"go-floor-indexbyte", Floor, -1}, {"go-naive-split", Naive, meta.Elements}} {
		var out bytes.Buffer
		if err := Measure(&out, tc.peer, path, tc.run); err != nil {
			t.Fatal(err)
		}
		line := out.String()
		for _, want := range []string{"peer=" + tc.peer + " ", " segments=" + itoa(meta.Segments) + " ", " elements=" + itoa(tc.elements) + " ", " bytes=" + itoa(meta.Bytes) + " ", " mb_s=", " peak_rss_kb=", " cpu_s=", " allocs="} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: %q lacks %q", tc.peer, line, want)
			}
		}
	}
	if PeakRSSKB() <= 0 {
		t.Error("PeakRSSKB <= 0")
	}
}

func TestNotX12(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.csv")
	if err := os.WriteFile(path, []byte(strings.Repeat("a,b,c\n", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Measure(&bytes.Buffer{}, "x", path, Naive); err == nil {
		t.Fatal("want an error for a file without ISA")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
