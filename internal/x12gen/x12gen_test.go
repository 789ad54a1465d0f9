package x12gen

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func baseConfig() Config {
	return Config{
		TxTypes: []string{"850"}, Version: "005010", Size: 60_000, TxPerIC: 7, GSPerIC: 1, Seed: 42,
		Elem: '*', Seg: '~', Comp: ':', Rep: '^', Usage: 'P', Sender: "S", Receiver: "R",
		MaxLines: 10, MaxOrders: 3, MaxPacks: 3, MaxItems: 4, Composites: true,
	}
}

// Every combination must pass the independent envelope/count check, and the
// check's counts must equal what the generator recorded in its meta.
func TestGeneratedFilesAreValid(t *testing.T) {
	dir := t.TempDir()
	type variant struct {
		name string
		mod  func(*Config)
	}
	variants := []variant{
		{"850-5010", func(c *Config) {}},
		{"855-5010", func(c *Config) { c.TxTypes = []string{"855"} }},
		{"856-5010", func(c *Config) { c.TxTypes = []string{"856"} }},
		{"850-4010-lf", func(c *Config) { c.Version, c.EOL = "004010", "\n" }},
		{"856-crlf-gt", func(c *Config) { c.TxTypes, c.EOL, c.Comp = []string{"856"}, "\r\n", '>' }},
		{"856-nl-terminator", func(c *Config) { c.TxTypes, c.Seg = []string{"856"}, '\n' }},
		{"mixed-3gs", func(c *Config) { c.TxTypes, c.GSPerIC, c.TxPerIC = []string{"850", "855", "856"}, 3, 4 }},
		{"one-interchange", func(c *Config) { c.TxPerIC = 0 }},
		{"pipe", func(c *Config) { c.Elem, c.Comp, c.Rep = '|', '>', '!' }},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			cfg := baseConfig()
			v.mod(&cfg)
			out := filepath.Join(dir, v.name+".x12")
			meta, err := Generate(cfg, out, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Check(out)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if res.Segments != meta.Segments || res.Interchanges != meta.Interchanges || res.Groups != meta.Groups || res.Transactions != meta.Transactions {
				t.Fatalf("check counts %+v != meta %+v", res, meta)
			}
			if res.Bytes != meta.Bytes {
				t.Fatalf("file has %d bytes, meta says %d", res.Bytes, meta.Bytes)
			}
			for tag, n := range meta.Tags {
				if res.Tags[tag] != n {
					t.Fatalf("tag %s: file %d, meta %d", tag, res.Tags[tag], n)
				}
			}
			if meta.Bytes < cfg.Size {
				t.Fatalf("size %d below target %d", meta.Bytes, cfg.Size)
			}
			data, _ := os.ReadFile(out)
			// ISA is 106 bytes and declares the delimiters
			if data[3] != cfg.Elem || data[104] != cfg.Comp || data[105] != cfg.Seg {
				t.Fatalf("ISA delimiters wrong: %q", data[:106])
			}
			if cfg.Version == "005010" && data[82] != cfg.Rep {
				t.Fatalf("ISA11 = %q, want %q", data[82], cfg.Rep)
			}
			if cfg.Version == "004010" && data[82] != 'U' {
				t.Fatalf("ISA11 = %q, want U", data[82])
			}
			// elements: count independently (split on the element separator)
			var elems int64
			for _, s := range bytes.Split(data, []byte{cfg.Seg}) {
				s = bytes.TrimLeft(s, "\r\n")
				if len(s) > 0 {
					elems += int64(bytes.Count(s, []byte{cfg.Elem}))
				}
			}
			if elems != meta.Elements {
				t.Fatalf("elements: file %d, meta %d", elems, meta.Elements)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig()
	cfg.TxTypes = []string{"856"}
	a, b := filepath.Join(dir, "a.x12"), filepath.Join(dir, "b.x12")
	if _, err := Generate(cfg, a, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(cfg, b, nil); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("same flags gave different output")
	}
	cfg.Seed++
	if _, err := Generate(cfg, b, nil); err != nil {
		t.Fatal(err)
	}
	db, _ = os.ReadFile(b)
	if bytes.Equal(da, db) {
		t.Fatal("different seeds gave the same output")
	}
}

func TestCheckRejectsBadCounts(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig()
	out := filepath.Join(dir, "x.x12")
	if _, err := Generate(cfg, out, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	// drop one PID segment: SE01 no longer matches
	i := bytes.Index(data, []byte("~PID*"))
	j := bytes.IndexByte(data[i+1:], '~')
	bad := append(append([]byte{}, data[:i]...), data[i+1+j:]...)
	if err := os.WriteFile(out, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(out); err == nil || !strings.Contains(err.Error(), "SE") {
		t.Fatalf("want an SE count error, got %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"10MB": 10_000_000, "1.5KB": 1500, "2MiB": 2 << 20, "100": 100, "1GB": 1e9} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseSize("ten"); err == nil {
		t.Error("ParseSize(ten) should fail")
	}
}

func TestGTINCheckDigit(t *testing.T) {
	// 03600029145 -> UPC-A 036000291452
	if got := gtinCheck("03600029145"); got != "036000291452" {
		t.Fatalf("gtinCheck = %s", got)
	}
}

// Write to a buffer gives the same bytes as Generate to a file, and Reusable
// recognises the file by its recorded args.
func TestWriteMatchesGenerateAndReuse(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig()
	out := filepath.Join(dir, "x.x12")
	args := []string{"-tx", "850", "-seed", "42", "-o", out}
	meta, err := Generate(cfg, out, args)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m2, err := Write(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	if !bytes.Equal(buf.Bytes(), data) || m2.Segments != meta.Segments {
		t.Fatal("Write and Generate differ")
	}
	if !Reusable(out, append([]string{"-reuse"}, args...)) {
		t.Fatal("same args: want reusable")
	}
	if Reusable(out, []string{"-tx", "850", "-seed", "43", "-o", out}) {
		t.Fatal("other seed: want not reusable")
	}
}

// Bytes must stay identical to the peers harness generator's (x12peers-gen 2)
// for the same flags: a digest of a small corpus per transaction type pins it
// (values produced by the harness's bin/gen -tx T -size 200KB -seed 7).
func TestOutputPinned(t *testing.T) {
	for _, tc := range []struct{ tx, want string }{{"850", pin850}, {"855", pin855}, {"856", pin856}} {
		cfg := Default()
		cfg.TxTypes, cfg.Size, cfg.Seed = []string{tc.tx}, 200_000, 7
		var buf bytes.Buffer
		if _, err := Write(&buf, cfg); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(buf.Bytes()))[:16]; got != tc.want {
			t.Errorf("%s: sha256 %s, want %s (output changed: bump GeneratorVersion, re-pin, and update the peers harness)", tc.tx, got, tc.want)
		}
	}
}

const (
	pin850 = "7ece4d3329c9e19a"
	pin855 = "cd93b927823652a8"
	pin856 = "24e73bf538afbb51"
)
