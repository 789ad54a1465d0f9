package x12gen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// CheckResult is what Check counted.
type CheckResult struct {
	Path                                         string
	Bytes                                        int64
	Segments, Interchanges, Groups, Transactions int64
	Tags                                         map[string]int64
}

func (c CheckResult) String() string {
	keys := make([]string, 0, len(c.Tags))
	for k := range c.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var tb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&tb, " %s=%d", k, c.Tags[k])
	}
	return fmt.Sprintf("ok %s bytes=%d segments=%d interchanges=%d groups=%d transactions=%d tags:%s",
		c.Path, c.Bytes, c.Segments, c.Interchanges, c.Groups, c.Transactions, tb.String())
}

// Check re-reads a file, independently of the generator and of the edi
// package, and verifies its delimiters, envelope pairing and control counts.
// It streams: memory does not grow with the file.
func Check(path string) (CheckResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return CheckResult{}, err
	}
	defer f.Close()
	res, err := check(bufio.NewReaderSize(f, 1<<20))
	res.Path = path
	return res, err
}

func check(br *bufio.Reader) (CheckResult, error) {
	head, _ := br.Peek(106)
	if len(head) < 106 || string(head[:3]) != "ISA" {
		return CheckResult{}, errors.New("does not start with a 106-byte ISA segment")
	}
	elem, comp, term := head[3], head[104], head[105]
	var res CheckResult
	res.Tags = map[string]int64{}
	var isa13, gs06, st02 string
	var inGroups, inTx, txSegs int
	var inIC, inGS bool
	var el []string
	for {
		raw, err := br.ReadSlice(term)
		if errors.Is(err, bufio.ErrBufferFull) {
			return res, fmt.Errorf("segment %d is longer than 1 MiB", res.Segments+1)
		}
		res.Bytes += int64(len(raw))
		if err == io.EOF {
			// only line breaks may follow the last terminator
			if len(bytes.Trim(raw, "\r\n")) > 0 {
				return res, fmt.Errorf("segment at byte %d has no terminator", res.Bytes-int64(len(raw)))
			}
			break
		}
		if err != nil {
			return res, err
		}
		// line breaks between segments
		s := raw[:len(raw)-1]
		for len(s) > 0 && (s[0] == '\n' || s[0] == '\r') {
			s = s[1:]
		}
		if len(s) == 0 && term != '\n' && term != '\r' {
			return res, fmt.Errorf("empty segment at byte %d", res.Bytes-1)
		}
		if len(s) == 0 {
			continue
		}
		res.Segments++
		segs := res.Segments
		el = el[:0]
		for _, e := range bytes.Split(s, []byte{elem}) {
			el = append(el, string(e))
		}
		tag := el[0]
		res.Tags[tag]++
		at := func(i int) string {
			if i < len(el) {
				return el[i]
			}
			return ""
		}
		switch tag {
		case "ISA":
			if inIC {
				return res, fmt.Errorf("ISA inside interchange (segment %d)", segs)
			}
			if len(s) != 105 || len(el) != 17 {
				return res, fmt.Errorf("ISA segment %d is not 106 bytes / 16 elements", segs)
			}
			if at(16) != string(comp) {
				return res, fmt.Errorf("ISA16 %q != component separator", at(16))
			}
			inIC, isa13, inGroups = true, at(13), 0
			res.Interchanges++
		case "IEA":
			if !inIC || inGS {
				return res, fmt.Errorf("unexpected IEA (segment %d)", segs)
			}
			if at(1) != strconv.Itoa(inGroups) || at(2) != isa13 {
				return res, fmt.Errorf("IEA %q/%q != groups %d / ISA13 %q", at(1), at(2), inGroups, isa13)
			}
			inIC = false
		case "GS":
			if !inIC || inGS {
				return res, fmt.Errorf("unexpected GS (segment %d)", segs)
			}
			inGS, gs06, inTx = true, at(6), 0
			inGroups++
			res.Groups++
		case "GE":
			if !inGS || st02 != "" {
				return res, fmt.Errorf("unexpected GE (segment %d)", segs)
			}
			if at(1) != strconv.Itoa(inTx) || at(2) != gs06 {
				return res, fmt.Errorf("GE %q/%q != transactions %d / GS06 %q", at(1), at(2), inTx, gs06)
			}
			inGS = false
		case "ST":
			if !inGS || st02 != "" {
				return res, fmt.Errorf("unexpected ST (segment %d)", segs)
			}
			st02, txSegs = at(2), 1
			inTx++
			res.Transactions++
		case "SE":
			txSegs++
			if st02 == "" {
				return res, fmt.Errorf("unexpected SE (segment %d)", segs)
			}
			if at(1) != strconv.Itoa(txSegs) || at(2) != st02 {
				return res, fmt.Errorf("SE %q/%q != segments %d / ST02 %q (segment %d)", at(1), at(2), txSegs, st02, segs)
			}
			st02 = ""
		default:
			if st02 == "" {
				return res, fmt.Errorf("segment %s outside a transaction (segment %d)", tag, segs)
			}
			txSegs++
		}
	}
	if inIC || inGS || st02 != "" {
		return res, errors.New("file ends inside an envelope")
	}
	return res, nil
}
