// Package x12bench measures one pass over an X12 file the way the peers
// benchmark harness (bench-peers) does, and holds the harness's two baselines:
// the IndexByte floor and the naive bufio.Scanner + bytes.Split loop.
//
// It imports the standard library only, so that cmd/x12baseline runs the
// baselines in a process with no other live heap: a naive split allocates a
// [][]byte per segment and slows down by about a third when the process holds
// a megabyte of other live heap (package init in a larger binary), because
// each garbage collection then starts sooner and marks more.
package x12bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Result is what one pass counted.
type Result struct {
	Size     int64 // bytes of the file
	Segments int64
	Elements int64  // harness definition; -1 when not counted
	Note     string // extra " key=value" fields for the result line
}

// Measure opens path and times run over it, from opening the file to the
// last segment, together with the heap allocations and the CPU time (user +
// system, all threads) it took, then prints the harness's result line:
//
//	peer=NAME file=PATH bytes=N segments=N elements=N elapsed_s=X mb_s=X peak_rss_kb=N go=V cpu_s=X allocs=N alloc_bytes=N ...
func Measure(w io.Writer, peer, path string, run func(f *os.File, r *Result) error) error {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	cpu0 := CPUTime()
	start := time.Now()
	var res Result
	err := func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		res.Size = st.Size()
		return run(f, &res)
	}()
	elapsed := time.Since(start)
	cpu := CPUTime() - cpu0
	runtime.ReadMemStats(&m1)
	if err != nil {
		return err
	}
	el := elapsed.Seconds()
	_, err = fmt.Fprintf(w, "peer=%s file=%s bytes=%d segments=%d elements=%d elapsed_s=%.4f mb_s=%.2f peak_rss_kb=%d go=%s cpu_s=%.4f allocs=%d alloc_bytes=%d%s\n",
		peer, path, res.Size, res.Segments, res.Elements, el, float64(res.Size)/1e6/el, PeakRSSKB(), runtime.Version(),
		cpu.Seconds(), m1.Mallocs-m0.Mallocs, m1.TotalAlloc-m0.TotalAlloc, res.Note)
	return err
}

// PeakRSSKB is the process's peak resident set size in KiB: VmHWM from
// /proc/self/status, else getrusage's ru_maxrss. Not ru_maxrss first: Linux
// carries it over exec from the memory of the process that started this one
// (Go's os/exec starts children with CLONE_VM), so a child started by a
// 20 MB parent reports at least 20 MB whatever it uses itself.
func PeakRSSKB() int64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
					return n
				}
			}
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return int64(ru.Maxrss)
}

// CPUTime is the process's user + system CPU time so far (all threads: the
// garbage collector's work on other cores counts too).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// delims reads the element separator and segment terminator from the
// fixed-width ISA at the start of f and rewinds it.
func delims(f *os.File) (elem, term byte, err error) {
	var isa [106]byte
	if _, err := io.ReadFull(f, isa[:]); err != nil || string(isa[:3]) != "ISA" {
		return 0, 0, errors.New("file does not start with a 106-byte ISA segment")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	return isa[3], isa[105], nil
}

// Floor counts segment terminators with bytes.IndexByte over 1 MiB reads:
// what any parser that visits each segment boundary stays under.
func Floor(f *os.File, r *Result) error {
	_, term, err := delims(f)
	if err != nil {
		return err
	}
	r.Elements = -1
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		b := buf[:n]
		for {
			i := bytes.IndexByte(b, term)
			if i < 0 {
				break
			}
			r.Segments++
			b = b[i+1:]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Naive is the first attempt anyone would write: bufio.Scanner split on the
// terminator, bytes.Split on the element separator (one [][]byte per
// segment), every element's length summed. Components are not split.
func Naive(f *os.File, r *Result) error {
	elem, term, err := delims(f)
	if err != nil {
		return err
	}
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
		r.Segments++
		r.Elements += int64(len(parts) - 1)
		for _, p := range parts[1:] {
			dataBytes += int64(len(p))
		}
	}
	r.Note = fmt.Sprintf(" data_bytes=%d", dataBytes)
	return sc.Err()
}
