package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edigw/edigw/edi/spec"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
a fresh child process (so that its peak RSS is its own; the modes take turns
run by run, so that background load hits them alike); the table shows the median MB/s (10^6 bytes per second, file open to
last segment, process start-up excluded), MB per CPU second of the same run
(user+sys of all threads: steadier than MB/s on a busy machine, but it
charges the garbage collector's work on other cores), ns per segment, heap allocations and
bytes allocated per MB of input (runtime.MemStats deltas), the child's peak
RSS (max of the runs), the ratios to the floor and to the naive split, and
whether the counts match FILE.meta.json (written by "edigw x12 gen").

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

// benchResult is one child run.
type benchResult struct {
	segments, elements int64 // elements -1: not counted
	allocs, allocBytes uint64
	elapsed            time.Duration
	size               int64
	note               string
}

func benchChild(w io.Writer, mode, path, cpuProfile string) error {
	if _, ok := benchPeerName[mode]; !ok {
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
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	cpu0 := cpuTime()
	start := time.Now()
	res, err := benchRun(mode, path)
	res.elapsed = time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&m1)
	if err != nil {
		return &exitError{1, fmt.Errorf("%s %s: %w", mode, path, err)}
	}
	res.allocs, res.allocBytes = m1.Mallocs-m0.Mallocs, m1.TotalAlloc-m0.TotalAlloc
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	el := res.elapsed.Seconds()
	fmt.Fprintf(w, "peer=%s file=%s bytes=%d segments=%d elements=%d elapsed_s=%.4f mb_s=%.2f peak_rss_kb=%d go=%s cpu_s=%.4f allocs=%d alloc_bytes=%d%s\n",
		benchPeerName[mode], path, res.size, res.segments, res.elements, el, float64(res.size)/1e6/el, ru.Maxrss, runtime.Version(),
		cpu.Seconds(), res.allocs, res.allocBytes, res.note)
	return nil
}

// cpuTime is the process's user + system CPU time so far (all threads: the
// garbage collector's work on other cores counts too).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchRun(mode, path string) (benchResult, error) {
	var res benchResult
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	res.size = st.Size()
	switch mode {
	case modeFloor, modeNaive:
		var isa [106]byte
		if _, err := io.ReadFull(f, isa[:]); err != nil || string(isa[:3]) != "ISA" {
			return res, errors.New("file does not start with a 106-byte ISA segment")
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return res, err
		}
		if mode == modeFloor {
			res.segments, err = benchFloor(f, isa[105])
			res.elements = -1
		} else {
			res.segments, res.elements, err = benchNaive(f, isa[105], isa[3])
		}
	case modeTokenize:
		err = benchTokenize(f, &res)
	case modeProcess, modeTree:
		err = benchProcess(f, mode == modeTree, &res)
	}
	return res, err
}

func benchFloor(f *os.File, term byte) (int64, error) {
	buf := make([]byte, 1<<20)
	var segs int64
	for {
		n, err := f.Read(buf)
		b := buf[:n]
		for {
			i := bytes.IndexByte(b, term)
			if i < 0 {
				break
			}
			segs++
			b = b[i+1:]
		}
		if err == io.EOF {
			return segs, nil
		}
		if err != nil {
			return segs, err
		}
	}
}

// benchNaive is the first attempt anyone would write: one [][]byte per segment.
func benchNaive(f *os.File, term, elem byte) (segs, elems int64, err error) {
	sc := bufio.NewScanner(bufio.NewReaderSize(f, 64<<10))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, term); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	sep := []byte{elem}
	var dataBytes int64
	for sc.Scan() {
		seg := bytes.TrimLeft(sc.Bytes(), "\r\n")
		if len(seg) == 0 {
			continue
		}
		parts := bytes.Split(seg, sep)
		segs++
		elems += int64(len(parts) - 1)
		for _, p := range parts[1:] {
			dataBytes += int64(len(p))
		}
	}
	_ = dataBytes
	return segs, elems, sc.Err()
}

// touch visits every element of seg and returns the harness's element count:
// data elements after the tag, trailing empty ones omitted, interior empty
// ones counted, a composite counted once.
func touch(seg *edi.Segment, dataBytes *int64) int64 {
	last := 0
	for i := 1; i <= seg.Len(); i++ {
		if e := seg.Element(i); len(e) > 0 {
			*dataBytes += int64(len(e))
			last = i
		}
	}
	return int64(last)
}

func benchTokenize(f *os.File, res *benchResult) error {
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
		res.segments++
		res.elements += touch(seg, &dataBytes)
	}
	res.note = fmt.Sprintf(" data_bytes=%d", dataBytes)
	return nil
}

// benchProcess runs edi.Process. With tree, it walks every set's tree and
// counts its segments and elements; the envelope segments outside sets are
// counted from the Interchange and Group (ISA and GS are kept; GE and IEA are
// not, so they count as their 2 elements when present). Without tree only
// segments are counted (elements=-1). Rejected sets or envelopes are reported
// on the line (rejected_sets, rejected_envelopes) and on stderr.
func benchProcess(f *os.File, tree bool, res *benchResult) error {
	var dataBytes, sets, rejSets, rejEnv int64
	noTree := false
	var walk func(n *edi.Node)
	walk = func(n *edi.Node) {
		for i := range n.Items {
			it := &n.Items[i]
			if it.Loop != nil {
				walk(it.Loop)
				continue
			}
			res.segments++
			res.elements += touch(it.Segment, &dataBytes)
		}
	}
	opt := edi.Options{
		Tree: tree,
		OnInterchangeStart: func(ic *edi.Interchange) {
			res.segments++
			res.elements += touch(&ic.ISA, &dataBytes)
		},
		OnGroupStart: func(ic *edi.Interchange, g *edi.Group) {
			res.segments++
			res.elements += touch(&g.GS, &dataBytes)
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
			res.segments += int64(s.Segments)
		},
		OnGroup: func(ic *edi.Interchange, g *edi.Group) {
			if len(g.Findings) > 0 {
				rejEnv++
			}
			if !hasCode(g.Findings, edi.GroupTrailerMissing) {
				res.segments++
				res.elements += 2
			}
		},
		OnInterchange: func(ic *edi.Interchange) {
			if ic.Rejected() {
				rejEnv++
			}
			if !hasCode(ic.Findings, edi.TA1PrematureEOF) {
				res.segments++
				res.elements += 2
			}
		},
	}
	if err := edi.Process(f, opt); err != nil {
		return err
	}
	if !tree || noTree {
		res.elements = -1
	}
	res.note = fmt.Sprintf(" data_bytes=%d sets=%d rejected_sets=%d rejected_envelopes=%d", dataBytes, sets, rejSets, rejEnv)
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
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "edigw x12 bench: %d run(s) per mode, each in a fresh process, modes interleaved; median MB/s (10^6 B/s); %s %s/%s, %d CPU, GOMAXPROCS %d\n",
		runs, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(out, "load average at start: %s\n", strings.Join(strings.Fields(string(la))[:3], " "))
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
				r, err := benchOnce(exe, sub, mode, file)
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
func benchOnce(exe string, sub []string, mode, file string) (benchRun1, error) {
	args := append(slices.Clone(sub), "--run-mode", mode, file)
	c := exec.Command(exe, args...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return benchRun1{}, fmt.Errorf("%s %s: %v: %s", mode, file, err, strings.TrimSpace(stderr.String()))
	}
	var r benchRun1
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssKB = int64(ru.Maxrss) // KiB on Linux
	}
	r.kv = parseKV(stdout.String())
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
