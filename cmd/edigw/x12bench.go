package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edigw/edigw/edi/spec"
	"github.com/edigw/edigw/internal/x12bench"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/edigw/edigw/edi"
	"github.com/spf13/cobra"
)

// Bench modes. tokenize, process and tree measure the engine; naive and floor
// are the same machine's baselines (the peers harness's go-naive-split and
// go-floor-indexbyte runners, re-implemented here so that one binary and one
// run give all the figures).
const (
	modeFloor    = "floor"    // 1 MiB reads + bytes.IndexByte per terminator
	modeNaive    = "naive"    // bufio.Scanner on the terminator + bytes.Split on the element separator
	modeTokenize = "tokenize" // edi.Reader.Next + every element touched
	modeProcess  = "process"  // edi.Process: envelopes + validation, no tree
	modeTree     = "tree"     // edi.Process with Tree: envelopes + validation + loop tree, tree walked
)

// benchPeerName is the name a mode's result line carries (the column name in
// the peers harness).
var benchPeerName = map[string]string{
	modeFloor: "go-floor-indexbyte", modeNaive: "go-naive-split",
	modeTokenize: "edigw-tokenize", modeProcess: "edigw-process", modeTree: "edigw-full",
}

func x12BenchCmd() *cobra.Command {
	var (
		modes       string
		runs        int
		noBaselines bool
		runMode     string
		cpuProfile  string
	)
	c := &cobra.Command{
		Use:   "bench [--modes tokenize,process,tree] [--runs 3] FILE...",
		Short: "Measure the X12 engine's MB/s, allocations and peak RSS on FILEs",
		Long: `Measure the X12 engine on each FILE, in modes:

  tokenize  edi.Reader.Next over the file, every element of every segment touched
  process   edi.Process: envelope checks + validation against the spec, no tree
  tree      edi.Process with Tree: envelopes + validation + loop tree (walked)

next to two baselines measured the same way on the same machine:

  floor     1 MiB reads + bytes.IndexByte per segment terminator
  naive     bufio.Scanner split on the terminator + bytes.Split per segment

FILE is read once first (page cache warm-up). Each mode runs --runs times in
a fresh child process, so that its peak RSS is its own; the modes take turns
run by run, so that background load hits them alike. floor and naive run in
x12baseline (a standard-library-only binary) when it sits next to edigw.
The table shows, per mode: the median MB/s (10^6 bytes per second, file open
to last segment, process start-up and the one-time spec load excluded); MB
per CPU second of the same run (user+sys of all threads: steadier on a busy
machine, but it charges the garbage collector's work on the other core); ns
per segment; heap allocations and KB allocated per MB of input
(runtime.MemStats deltas); the child's peak RSS (VmHWM, max of the runs); the
ratios to the floor and to the naive split; and whether the counts match
FILE.meta.json (written by "edigw x12 gen").

Targets: tokenize >= 40% of floor; tree (full parse + validate + tree) >= naive.

"edigw x12 bench --run-mode MODE FILE" runs one mode once in-process and prints
the peers harness's result line (peer=... segments=N elements=N mb_s=X ...).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runMode != "" {
				if len(args) != 1 {
					return errors.New("--run-mode takes exactly one FILE")
				}
				return benchChild(cmd.OutOrStdout(), runMode, args[0], cpuProfile)
			}
			ms := strings.Split(modes, ",")
			for _, m := range ms {
				switch m {
				case modeTokenize, modeProcess, modeTree, modeNaive, modeFloor:
				default:
					return fmt.Errorf("unknown mode %q (tokenize, process, tree)", m)
				}
			}
			if !noBaselines {
				ms = append([]string{modeFloor, modeNaive}, slices.DeleteFunc(ms, func(m string) bool { return m == modeFloor || m == modeNaive })...)
			}
			if runs < 1 {
				return errors.New("--runs must be >= 1")
			}
			return benchParent(cmd, ms, runs, args)
		},
	}
	f := c.Flags()
	f.StringVar(&modes, "modes", "tokenize,process,tree", "engine modes to measure: tokenize, process, tree (comma list)")
	f.IntVar(&runs, "runs", 3, "runs per file and mode (the median is shown)")
	f.BoolVar(&noBaselines, "no-baselines", false, "do not measure the floor and naive baselines")
	f.StringVar(&runMode, "run-mode", "", "run one mode once in this process and print the harness result line (tokenize, process, tree, naive, floor)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "with --run-mode: write a CPU profile")
	_ = f.MarkHidden("run-mode")
	_ = f.MarkHidden("cpuprofile")
	return c
}

// ---------------------------------------------------------------- child

func benchChild(w io.Writer, mode, path, cpuProfile string) error {
	run := map[string]func(*os.File, *x12bench.Result) error{
		modeFloor: x12bench.Floor, modeNaive: x12bench.Naive,
		modeTokenize: benchTokenize,
		modeProcess:  func(f *os.File, r *x12bench.Result) error { return benchProcess(f, false, r) },
		modeTree:     func(f *os.File, r *x12bench.Result) error { return benchProcess(f, true, r) },
	}[mode]
	if run == nil {
		return fmt.Errorf("unknown mode %q", mode)
	}
	if cpuProfile != "" {
		pf, err := os.Create(cpuProfile)
		if err != nil {
			return &exitError{1, err}
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return &exitError{1, err}
		}
		defer pprof.StopCPUProfile()
	}
	// The embedded X12 specs are loaded once per process (a gateway loads
	// them at start); that one-time cost is not parsing speed.
	if mode == modeProcess || mode == modeTree {
		for _, v := range spec.Versions() {
			spec.Default(v)
		}
	}
	if err := x12bench.Measure(w, benchPeerName[mode], path, run); err != nil {
		return &exitError{1, fmt.Errorf("%s %s: %w", mode, path, err)}
	}
	return nil
}

// touch visits every element of seg and returns the harness's element count
// (data elements after the tag, trailing empty ones omitted, interior empty
// ones counted, a composite counted once) and the elements' bytes.
func touch(seg *edi.Segment) (elements, dataBytes int64) {
	last := 0
	for i := 1; i <= seg.Len(); i++ {
		if e := seg.Element(i); len(e) > 0 {
			dataBytes += int64(len(e))
			last = i
		}
	}
	return int64(last), dataBytes
}

// walkTree touches every segment of a loop tree (see touch) and returns the
// counts, in locals rather than through the closure's captured variables.
func walkTree(n *edi.Node) (segs, elems, dataBytes int64) {
	for i := range n.Items {
		it := &n.Items[i]
		if it.Loop != nil {
			s, e, b := walkTree(it.Loop)
			segs, elems, dataBytes = segs+s, elems+e, dataBytes+b
			continue
		}
		e, b := touch(it.Segment)
		segs, elems, dataBytes = segs+1, elems+e, dataBytes+b
	}
	return segs, elems, dataBytes
}

func benchTokenize(f *os.File, res *x12bench.Result) error {
	r := edi.NewReader(f)
	var dataBytes int64
	for {
		seg, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		res.Segments++
		e, b := touch(seg)
		res.Elements += e
		dataBytes += b
	}
	res.Note = fmt.Sprintf(" data_bytes=%d", dataBytes)
	return nil
}

// benchProcess runs edi.Process. With tree, it walks every set's tree and
// counts its segments and elements; the envelope segments outside sets are
// counted from the Interchange and Group (ISA and GS are kept; GE and IEA are
// not, so they count as their 2 elements when present). Without tree only
// segments are counted (elements=-1). Rejected sets or envelopes are reported
// on the line (rejected_sets, rejected_envelopes) and on stderr.
func benchProcess(f *os.File, tree bool, res *x12bench.Result) error {
	var dataBytes, sets, rejSets, rejEnv int64
	noTree := false
	walk := func(n *edi.Node) {
		segs, elems, bytes := walkTree(n)
		res.Segments += segs
		res.Elements += elems
		dataBytes += bytes
	}
	opt := edi.Options{
		Tree: tree,
		OnInterchangeStart: func(ic *edi.Interchange) {
			res.Segments++
			e, b := touch(&ic.ISA)
			res.Elements += e
			dataBytes += b
		},
		OnGroupStart: func(ic *edi.Interchange, g *edi.Group) {
			res.Segments++
			e, b := touch(&g.GS)
			res.Elements += e
			dataBytes += b
		},
		OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
			sets++
			if s.Status != "A" {
				rejSets++
			}
			if tree && s.Tree != nil {
				walk(s.Tree)
				return
			}
			noTree = noTree || tree
			res.Segments += int64(s.Segments)
		},
		OnGroup: func(ic *edi.Interchange, g *edi.Group) {
			if len(g.Findings) > 0 {
				rejEnv++
			}
			if !hasCode(g.Findings, edi.GroupTrailerMissing) {
				res.Segments++
				res.Elements += 2
			}
		},
		OnInterchange: func(ic *edi.Interchange) {
			if ic.Rejected() {
				rejEnv++
			}
			if !hasCode(ic.Findings, edi.TA1PrematureEOF) {
				res.Segments++
				res.Elements += 2
			}
		},
	}
	if err := edi.Process(f, opt); err != nil {
		return err
	}
	if !tree || noTree {
		res.Elements = -1
	}
	res.Note = fmt.Sprintf(" data_bytes=%d sets=%d rejected_sets=%d rejected_envelopes=%d", dataBytes, sets, rejSets, rejEnv)
	if rejSets > 0 || rejEnv > 0 {
		fmt.Fprintf(os.Stderr, "edigw bench: warning: %d of %d sets and %d envelopes rejected (the figures include finding reports)\n", rejSets, sets, rejEnv)
	}
	return nil
}

func hasCode(fs []edi.Finding, code string) bool {
	for _, f := range fs {
		if f.Code == code {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- parent

// benchRow is one file and mode over all runs.
type benchRow struct {
	mode      string
	mbs       float64 // median
	min, max  float64
	nsPerSeg  float64
	mbCPU     float64 // MB per CPU second (median run)
	allocsMB  float64
	kbAllocMB float64
	rssKB     int64 // max of the runs, from the child's rusage
	segments  int64
	elements  int64
	check     string
	extra     map[string]string
}

func benchParent(cmd *cobra.Command, modes []string, runs int, files []string) error {
	exe, err := os.Executable()
	if err != nil {
		return &exitError{1, err}
	}
	// Re-exec this very command: "edigw x12 bench" -> ["x12", "bench"].
	sub := strings.Fields(cmd.CommandPath())[1:]
	// The baselines run in x12baseline, a standard-library-only binary next
	// to edigw, when there is one: in edigw's own process the live heap left
	// by package init makes the naive split's garbage collections start
	// sooner and mark more, and it runs about a third slower than the peers
	// harness's runner.
	baseline := filepath.Join(filepath.Dir(exe), "x12baseline")
	if st, err := os.Stat(baseline); err != nil || st.IsDir() {
		baseline = ""
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "edigw x12 bench: %d run(s) per mode, each in a fresh process, modes interleaved; median MB/s (10^6 B/s); %s %s/%s, %d CPU, GOMAXPROCS %d\n",
		runs, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(out, "load average at start: %s\n", strings.Join(strings.Fields(string(la))[:3], " "))
	}
	if baseline != "" {
		fmt.Fprintf(out, "floor and naive run in %s (standard library only)\n", baseline)
	} else {
		fmt.Fprintln(out, "floor and naive run in edigw's process (no x12baseline next to it: `make bench` builds one); naive is then ~1/3 slower than the peers harness's")
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file\tmode\tMB/s\tmin-max\tMB/cpu-s\tns/seg\tallocs/MB\tKB alloc/MB\tpeak RSS MB\t% floor\t× naive\tcounts\t")
	var targets []string
	for _, file := range files {
		meta := readMeta(file)
		if err := warmPageCache(file); err != nil {
			tw.Flush()
			return &exitError{1, err}
		}
		// Round robin over the modes, so that a change in background load
		// during the runs hits every mode alike.
		results := map[string][]benchRun1{}
		for i := 0; i < runs; i++ {
			for _, mode := range modes {
				r, err := benchOnce(exe, sub, baseline, mode, file)
				if err != nil {
					tw.Flush()
					return &exitError{1, err}
				}
				results[mode] = append(results[mode], r)
			}
		}
		byMode := map[string]*benchRow{}
		for _, mode := range modes {
			row := benchSummary(mode, results[mode])
			row.check = countCheck(row, meta)
			byMode[mode] = row
		}
		name := filepath.Base(file)
		for i, mode := range modes {
			r := byMode[mode]
			pf, xn := "", ""
			if fl := byMode[modeFloor]; fl != nil && mode != modeFloor {
				pf = fmt.Sprintf("%.0f%%", 100*r.mbs/fl.mbs)
			}
			if nv := byMode[modeNaive]; nv != nil && mode != modeNaive {
				xn = fmt.Sprintf("%.2f", r.mbs/nv.mbs)
			}
			fname := name
			if i > 0 {
				fname = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s-%s\t%s\t%.1f\t%s\t%s\t%.1f\t%s\t%s\t%s\t\n", fname, mode, fmtMBs(r.mbs), fmtMBs(r.min), fmtMBs(r.max),
				fmtMBs(r.mbCPU), r.nsPerSeg, fmtNum(r.allocsMB), fmtNum(r.kbAllocMB), float64(r.rssKB)/1024, pf, xn, r.check)
		}
		if t, fl := byMode[modeTokenize], byMode[modeFloor]; t != nil && fl != nil {
			targets = append(targets, fmt.Sprintf("%s: tokenize = %.0f%% of floor (target >= 40%%): %s", name, 100*t.mbs/fl.mbs, metMissed(t.mbs >= 0.4*fl.mbs)))
		}
		if t, nv := byMode[modeTree], byMode[modeNaive]; t != nil && nv != nil {
			targets = append(targets, fmt.Sprintf("%s: tree = %.2f× naive (target >= 1.00×): %s", name, t.mbs/nv.mbs, metMissed(t.mbs >= nv.mbs)))
		}
		for _, mode := range modes {
			if r := byMode[mode]; r.extra["rejected_sets"] != "" && r.extra["rejected_sets"] != "0" || r.extra["rejected_envelopes"] != "" && r.extra["rejected_envelopes"] != "0" {
				targets = append(targets, fmt.Sprintf("%s: %s: WARNING %s of %s sets and %s envelopes rejected by validation", name, mode, r.extra["rejected_sets"], r.extra["sets"], r.extra["rejected_envelopes"]))
			}
		}
	}
	tw.Flush()
	if len(targets) > 0 {
		fmt.Fprintln(out, "targets:")
		for _, t := range targets {
			fmt.Fprintln(out, "  "+t)
		}
	}
	return nil
}

// warmPageCache reads file once so that every mode, the first one included,
// reads it from the page cache (the figures are CPU costs, not disk reads).
func warmPageCache(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return err
}

func metMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func fmtMBs(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func fmtNum(v float64) string {
	if v >= 10 || v == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// benchRun1 is one child run: its result line and peak RSS.
type benchRun1 struct {
	kv    map[string]string
	mbs   float64
	rssKB int64
}

// benchOnce runs one mode once in a child process.
// Baselines run in baseline (x12baseline) when it is set.
func benchOnce(exe string, sub []string, baseline, mode, file string) (benchRun1, error) {
	args := append(slices.Clone(sub), "--run-mode", mode, file)
	c := exec.Command(exe, args...)
	if baseline != "" && (mode == modeFloor || mode == modeNaive) {
		c = exec.Command(baseline, mode, file)
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return benchRun1{}, fmt.Errorf("%s %s: %v: %s", mode, file, err, strings.TrimSpace(stderr.String()))
	}
	var r benchRun1
	r.kv = parseKV(stdout.String())
	// The child's own peak_rss_kb (VmHWM), not the ru_maxrss of
	// c.ProcessState: that one includes this parent's RSS (see
	// x12bench.PeakRSSKB).
	r.rssKB, _ = strconv.ParseInt(r.kv["peak_rss_kb"], 10, 64)
	var err error
	if r.mbs, err = strconv.ParseFloat(r.kv["mb_s"], 64); err != nil {
		return benchRun1{}, fmt.Errorf("%s %s: no mb_s in %q", mode, file, stdout.String())
	}
	return r, nil
}

// benchSummary turns the runs of one mode into a table row: the median run
// (by MB/s) gives the figures, the peak RSS is the max over the runs.
func benchSummary(mode string, rs []benchRun1) *benchRow {
	row := &benchRow{mode: mode}
	for _, r := range rs {
		row.rssKB = max(row.rssKB, r.rssKB)
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b benchRun1) int {
		switch {
		case a.mbs < b.mbs:
			return -1
		case a.mbs > b.mbs:
			return 1
		}
		return 0
	})
	med := rs[len(rs)/2]
	row.mbs, row.min, row.max = med.mbs, rs[0].mbs, rs[len(rs)-1].mbs
	kv := med.kv
	row.extra = kv
	num := func(k string) float64 { v, _ := strconv.ParseFloat(kv[k], 64); return v }
	mb := num("bytes") / 1e6
	row.segments, row.elements = int64(num("segments")), int64(num("elements"))
	if row.segments > 0 {
		row.nsPerSeg = num("elapsed_s") * 1e9 / float64(row.segments)
	}
	if c := num("cpu_s"); c > 0 {
		row.mbCPU = mb / c
	}
	if mb > 0 {
		row.allocsMB = num("allocs") / mb
		row.kbAllocMB = num("alloc_bytes") / 1024 / mb
	}
	return row
}

func parseKV(line string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

type benchMeta struct {
	Segments int64 `json:"segments"`
	Elements int64 `json:"elements"`
}

func readMeta(file string) *benchMeta {
	b, err := os.ReadFile(file + ".meta.json")
	if err != nil {
		return nil
	}
	var m benchMeta
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return &m
}

// countCheck compares a mode's counts with the generator's meta.
func countCheck(r *benchRow, m *benchMeta) string {
	if m == nil {
		return "no meta"
	}
	if r.segments != m.Segments {
		return fmt.Sprintf("segments %d≠%d", r.segments, m.Segments)
	}
	if r.elements >= 0 && r.elements != m.Elements {
		return fmt.Sprintf("elements %d≠%d", r.elements, m.Elements)
	}
	if r.elements < 0 {
		return "ok (segs)"
	}
	return "ok"
}
