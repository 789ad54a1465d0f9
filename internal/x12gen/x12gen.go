// Package x12gen writes deterministic, syntactically valid ANSI X12
// interchanges (004010 or 005010) for benchmarks and load tests.
//
// Transaction sets: 850 (purchase order), 855 (PO acknowledgment) and 856
// (ship notice, HL loops shipment>order>pack>item). Every interchange is a
// full ISA/GS/ST..SE/GE/IEA envelope with correct control numbers and counts
// (SE01, GE01, IEA01, ISA13=IEA02, GS06=GE02, ST02=SE02).
//
// The output is a pure function of the Config (seed included): the same
// Config always gives the same bytes, and the same bytes as the peers
// benchmark harness's generator (bench-peers gen/main.go, "x12peers-gen 2")
// for the same flags, so corpora made by either tool are interchangeable.
// Next to a generated file, FILE.meta.json records the exact segment, element
// and envelope counts, which benchmark drivers use to cross-check parsers.
package x12gen

import (
	"bufio"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config says what to generate. Start from Default.
type Config struct {
	TxTypes    []string // "850", "855", "856": one type per functional group, round robin
	Version    string   // "005010" or "004010"
	Size       int64    // stop after the transaction set that reaches this many bytes
	TxPerIC    int      // sets per interchange (per group when GSPerIC > 1); 0 = one interchange
	GSPerIC    int      // functional groups per interchange
	Seed       uint64
	Elem       byte // element separator
	Seg        byte // segment terminator
	Comp       byte // component separator (ISA16)
	Rep        byte // repetition separator (ISA11, 005010 only)
	EOL        string
	Usage      byte // ISA15 P/T
	Sender     string
	Receiver   string
	MaxLines   int // max PO1 lines per 850/855
	MaxOrders  int // 856: max orders per shipment
	MaxPacks   int // 856: max packs per order
	MaxItems   int // 856: max items per pack
	Composites bool
}

// Default is the configuration of the generator's flag defaults.
func Default() Config {
	return Config{
		TxTypes: []string{"850"}, Version: "005010", Size: 1_000_000, TxPerIC: 100, GSPerIC: 1, Seed: 1,
		Elem: '*', Seg: '~', Comp: ':', Rep: '^', Usage: 'P', Sender: "SENDERID", Receiver: "RECEIVERID",
		MaxLines: 40, MaxOrders: 3, MaxPacks: 3, MaxItems: 4, Composites: true,
	}
}

// Validate reports a Config that cannot give a valid interchange.
func (c *Config) Validate() error {
	if len(c.TxTypes) == 0 {
		return errors.New("no transaction set type")
	}
	for _, t := range c.TxTypes {
		switch t {
		case "850", "855", "856":
		default:
			return fmt.Errorf("unsupported transaction set %q", t)
		}
	}
	if c.Version != "005010" && c.Version != "004010" {
		return errors.New("version must be 005010 or 004010")
	}
	if c.Size <= 0 {
		return errors.New("size must be > 0")
	}
	switch c.EOL {
	case "", "\n", "\r\n":
	default:
		return fmt.Errorf("EOL %q must be empty, LF or CRLF", c.EOL)
	}
	if c.Seg == '\n' && c.EOL != "" {
		return errors.New("EOL must be empty when the segment terminator is a newline")
	}
	if c.MaxLines < 1 || c.MaxOrders < 1 || c.MaxPacks < 1 || c.MaxItems < 1 || c.GSPerIC < 1 || c.TxPerIC < 0 {
		return errors.New("counts must be >= 1 (tx-per-ic >= 0)")
	}
	delims := []byte{c.Elem, c.Seg, c.Comp}
	if c.Version == "005010" {
		delims = append(delims, c.Rep)
	}
	for i, d := range delims {
		if isDataChar(d) {
			return fmt.Errorf("delimiter %q collides with the data alphabet [A-Za-z0-9 .-/#+]", d)
		}
		for _, e := range delims[i+1:] {
			if d == e {
				return fmt.Errorf("delimiters must be distinct (%q repeated)", d)
			}
		}
	}
	return nil
}

// Meta is written as FILE.meta.json.
type Meta struct {
	File         string            `json:"file"`
	Bytes        int64             `json:"bytes"`
	Segments     int64             `json:"segments"`
	Elements     int64             `json:"elements"`   // data elements, tag excluded, trailing empties trimmed
	Components   int64             `json:"components"` // extra component values beyond the first in composites
	Interchanges int64             `json:"interchanges"`
	Groups       int64             `json:"groups"`
	Transactions int64             `json:"transactions"`
	Tags         map[string]int64  `json:"tags"`
	Version      string            `json:"version"`
	TxTypes      []string          `json:"tx_types"`
	Delimiters   map[string]string `json:"delimiters"`
	Seed         uint64            `json:"seed"`
	Args         []string          `json:"args"`
	Generator    string            `json:"generator"`
}

// GeneratorVersion is recorded in every Meta. It equals the peers harness
// generator's as long as the output is byte-identical; change both when the
// output changes, so that reused corpora are regenerated.
const GeneratorVersion = "x12peers-gen 2"

type gen struct {
	cfg  Config
	r    *rand.Rand
	w    *bufio.Writer
	meta Meta
	buf  []byte
	// per-transaction segment count (for SE01)
	txSegs int
	base   time.Time
}

// Write writes the interchanges for cfg to w and returns their counts
// (Meta.File and Meta.Args are left empty).
func Write(w io.Writer, cfg Config) (Meta, error) {
	if err := cfg.Validate(); err != nil {
		return Meta{}, err
	}
	g := &gen{
		cfg: cfg,
		r:   rand.New(rand.NewPCG(cfg.Seed, 0x5850_3132)),
		w:   bufio.NewWriterSize(w, 1<<20),
		buf: make([]byte, 0, 512),
	}
	g.base = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, g.r.IntN(365))
	g.meta = Meta{
		Tags: map[string]int64{}, Version: cfg.Version, TxTypes: cfg.TxTypes,
		Seed: cfg.Seed, Generator: GeneratorVersion,
		Delimiters: map[string]string{"element": string(cfg.Elem), "segment": string(cfg.Seg), "component": string(cfg.Comp), "eol": cfg.EOL},
	}
	if cfg.Version == "005010" {
		g.meta.Delimiters["repetition"] = string(cfg.Rep)
	}
	g.run()
	if err := g.w.Flush(); err != nil {
		return Meta{}, err
	}
	return g.meta, nil
}

// Generate writes the corpus for cfg to path and its counts to
// path.meta.json. args are recorded in the meta (the command line that made
// the file, for Reusable).
func Generate(cfg Config, path string, args []string) (Meta, error) {
	f, err := os.Create(path)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	meta, err := Write(f, cfg)
	if err != nil {
		return Meta{}, err
	}
	if err := f.Close(); err != nil {
		return Meta{}, err
	}
	meta.File, meta.Args = path, args
	mb, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(path+".meta.json", append(mb, '\n'), 0o644); err != nil {
		return Meta{}, err
	}
	return meta, nil
}

// Reusable reports whether path and path.meta.json exist, the meta was
// written by this generator version with the same args (-reuse and -q
// aside), and the file still has the recorded size.
func Reusable(path string, args []string) bool {
	b, err := os.ReadFile(path + ".meta.json")
	if err != nil {
		return false
	}
	var m Meta
	if json.Unmarshal(b, &m) != nil || m.Generator != GeneratorVersion {
		return false
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != m.Bytes {
		return false
	}
	return strings.Join(argsSans(m.Args), "\x00") == strings.Join(argsSans(args), "\x00")
}

func argsSans(args []string) []string {
	var out []string
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case "reuse", "q", "reuse=true", "q=true":
			continue
		}
		out = append(out, a)
	}
	return out
}

// ParseDelimiter reads a delimiter flag: one ASCII character, or \n, \r, \t.
func ParseDelimiter(s string) (byte, error) {
	switch s {
	case `\n`:
		return '\n', nil
	case `\r`:
		return '\r', nil
	case `\t`:
		return '\t', nil
	}
	if len(s) != 1 {
		return 0, fmt.Errorf("must be a single ASCII character, got %q", s)
	}
	return s[0], nil
}

func isDataChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == ' ' || c == '.' || c == '-' || c == '/' || c == '#' || c == '+'
}

// ParseSize reads a size: 500KB, 10MB, 1GB (powers of 10), 2MiB, 1GiB
// (powers of 2), or a plain byte count.
func ParseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, x := range []struct {
		suf string
		m   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(u, x.suf) {
			u, mult = strings.TrimSpace(strings.TrimSuffix(u, x.suf)), x.m
			break
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(v * float64(mult)), nil
}

// ---------------------------------------------------------------- writing

// seg writes one segment. Trailing empty elements are dropped, as X12 requires.
func (g *gen) segment(tag string, elems ...string) {
	n := len(elems)
	for n > 0 && elems[n-1] == "" {
		n--
	}
	b := g.buf[:0]
	b = append(b, tag...)
	for _, e := range elems[:n] {
		b = append(b, g.cfg.Elem)
		b = append(b, e...)
		for i := 0; i < len(e); i++ {
			if e[i] == g.cfg.Comp {
				g.meta.Components++
			}
		}
	}
	b = append(b, g.cfg.Seg)
	b = append(b, g.cfg.EOL...)
	g.buf = b
	g.w.Write(b)
	g.meta.Bytes += int64(len(b))
	g.meta.Segments++
	g.meta.Elements += int64(n)
	g.meta.Tags[tag]++
	g.txSegs++
}

// composite joins components with the component separator, dropping trailing empties.
func (g *gen) composite(parts ...string) string {
	n := len(parts)
	for n > 0 && parts[n-1] == "" {
		n--
	}
	return strings.Join(parts[:n], string(g.cfg.Comp))
}

func (g *gen) run() {
	cfg := g.cfg
	icn := 0 // ISA13
	gcn := 0 // GS06 (unique in the file)
	txIdx := 0
	typeIdx := 0
	for done := false; !done; {
		icn++
		g.meta.Interchanges++
		g.isa(icn)
		groups := 0
		for gi := 0; gi < cfg.GSPerIC && !done; gi++ {
			gcn++
			groups++
			g.meta.Groups++
			tx := cfg.TxTypes[typeIdx%len(cfg.TxTypes)]
			typeIdx++
			g.gs(tx, gcn)
			nTx := 0
			for {
				nTx++
				txIdx++
				g.meta.Transactions++
				g.transaction(tx, nTx, txIdx)
				if g.meta.Bytes >= cfg.Size {
					done = true
					break
				}
				if cfg.TxPerIC > 0 && nTx >= cfg.TxPerIC {
					break
				}
			}
			g.segment("GE", strconv.Itoa(nTx), strconv.Itoa(gcn))
		}
		g.segment("IEA", strconv.Itoa(groups), fmt.Sprintf("%09d", icn))
	}
}

func (g *gen) isa(icn int) {
	cfg := g.cfg
	rep := string(cfg.Rep)
	ver := "00501"
	if cfg.Version == "004010" {
		rep, ver = "U", "00401"
	}
	t := g.base.Add(time.Duration(icn) * time.Minute)
	g.segment("ISA",
		"00", pad("", 10), "00", pad("", 10),
		"ZZ", pad(cfg.Sender, 15), "ZZ", pad(cfg.Receiver, 15),
		t.Format("060102"), t.Format("1504"), rep, ver, fmt.Sprintf("%09d", icn),
		"0", string(cfg.Usage), string(cfg.Comp))
}

func (g *gen) gs(tx string, gcn int) {
	fid := map[string]string{"850": "PO", "855": "PR", "856": "SH"}[tx]
	t := g.base.Add(time.Duration(gcn) * time.Minute)
	g.segment("GS", fid, g.cfg.Sender, g.cfg.Receiver, t.Format("20060102"), t.Format("1504"),
		strconv.Itoa(gcn), "X", g.cfg.Version)
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat(" ", n-len(s))
}

func (g *gen) transaction(tx string, nTx, txIdx int) {
	ctl := fmt.Sprintf("%04d", nTx)
	g.txSegs = 0
	g.segment("ST", tx, ctl)
	switch tx {
	case "850":
		g.body850(txIdx)
	case "855":
		g.body855(txIdx)
	case "856":
		g.body856(txIdx)
	}
	g.segment("SE", strconv.Itoa(g.txSegs+1), ctl)
}

// ---------------------------------------------------------------- data

var (
	words1   = []string{"ACME", "GLOBEX", "INITECH", "UMBRELLA", "STARK", "WAYNE", "WONKA", "HOOLI", "VANDELAY", "TYRELL", "CYBERDYNE", "SOYLENT", "MASSIVE DYNAMIC", "OSCORP", "NORTHWIND", "CONTOSO"}
	words2   = []string{"SUPPLY", "FOODS", "INDUSTRIES", "LOGISTICS", "RETAIL", "DISTRIBUTION", "HARDWARE", "APPAREL", "OUTFITTERS", "WHOLESALE"}
	words3   = []string{"INC", "LLC", "CO", "CORP", "LTD"}
	streets  = []string{"MAIN", "OAK", "PINE", "MAPLE", "CEDAR", "ELM", "WASHINGTON", "LAKE", "HILL", "RIVER", "PARK", "SUNSET"}
	stTypes  = []string{"ST", "AVE", "BLVD", "RD", "DR", "LN", "WAY"}
	cities   = [][2]string{{"CHICAGO", "IL"}, {"DALLAS", "TX"}, {"ATLANTA", "GA"}, {"DENVER", "CO"}, {"SEATTLE", "WA"}, {"BOSTON", "MA"}, {"PHOENIX", "AZ"}, {"COLUMBUS", "OH"}, {"MEMPHIS", "TN"}, {"RENO", "NV"}, {"NEWARK", "NJ"}, {"FRESNO", "CA"}}
	adjs     = []string{"RED", "BLUE", "GREEN", "LARGE", "SMALL", "STEEL", "COTTON", "ORGANIC", "DELUXE", "HEAVY DUTY", "COMPACT", "WIRELESS"}
	nouns    = []string{"WIDGET", "GADGET", "SHIRT", "BOLT 1/4 IN", "PANEL", "CABLE 6 FT", "LAMP", "CHAIR", "BACKPACK", "KETTLE", "SPEAKER", "DRILL BIT"}
	uoms     = []string{"EA", "EA", "EA", "CA", "BX", "PK", "DZ"}
	scacs    = [][2]string{{"UPSN", "UPS GROUND"}, {"FDEG", "FEDEX GROUND"}, {"ODFL", "OLD DOMINION"}, {"RLCA", "R+L CARRIERS"}, {"SAIA", "SAIA INC"}, {"XPOL", "XPO LOGISTICS"}}
	ackCodes = []string{"IA", "IA", "IA", "IA", "IB", "IR", "IQ"}
)

func (g *gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func (g *gen) alnum(n int) string {
	const a = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = a[g.r.IntN(len(a))]
	}
	return string(b)
}

// gtinCheck appends a GS1 mod-10 check digit.
func gtinCheck(d string) string {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if (len(d)-1-i)%2 == 0 {
			v *= 3
		}
		sum += v
	}
	return d + strconv.Itoa((10-sum%10)%10)
}

func (g *gen) date(offsetDays int) string {
	return g.base.AddDate(0, 0, offsetDays).Format("20060102")
}

func (g *gen) company() string {
	return g.pick(words1) + " " + g.pick(words2) + " " + g.pick(words3)
}

func (g *gen) price() string {
	cents := 50 + g.r.IntN(50000)
	return strconv.Itoa(cents/100) + "." + fmt.Sprintf("%02d", cents%100)
}

func (g *gen) refComposite(q string) string {
	if !g.cfg.Composites || g.r.IntN(3) != 0 {
		return ""
	}
	return g.composite(q, g.alnum(8))
}

// n1Loop writes N1/N3/N4 (+ optional N2/PER not used to keep 850/856 orders simple).
func (g *gen) n1Loop(code string) {
	g.segment("N1", code, g.company(), "92", g.alnum(6))
	g.segment("N3", strconv.Itoa(1+g.r.IntN(9999))+" "+g.pick(streets)+" "+g.pick(stTypes))
	c := cities[g.r.IntN(len(cities))]
	g.segment("N4", c[0], c[1], g.digits(5), "US")
}

func (g *gen) body850(txIdx int) {
	po := "PO" + fmt.Sprintf("%08d", txIdx)
	g.segment("BEG", "00", "SA", po, "", g.date(0))
	g.segment("REF", "DP", g.digits(3))
	g.segment("REF", "IA", g.alnum(7), "", g.refComposite("VN"))
	if g.r.IntN(2) == 0 {
		g.segment("REF", "VR", g.alnum(10))
	}
	g.segment("DTM", "002", g.date(7+g.r.IntN(30)))
	if g.r.IntN(2) == 0 {
		g.segment("DTM", "010", g.date(3+g.r.IntN(5)))
	}
	g.n1Loop("BT")
	g.n1Loop("ST")
	if g.r.IntN(3) == 0 {
		g.n1Loop("VN")
	}
	lines := 1 + g.r.IntN(g.cfg.MaxLines)
	qtySum := 0
	for i := 1; i <= lines; i++ {
		qty := 1 + g.r.IntN(500)
		qtySum += qty
		g.segment("PO1", strconv.Itoa(i), strconv.Itoa(qty), g.pick(uoms), g.price(), "",
			"BP", g.alnum(10), "VP", g.alnum(8), "UP", gtinCheck(g.digits(11)))
		g.segment("PID", "F", "", "", "", g.pick(adjs)+" "+g.pick(nouns))
		if g.r.IntN(4) == 0 {
			g.segment("PID", "F", "08", "", "", "COLOR "+g.pick(adjs))
		}
	}
	g.segment("CTT", strconv.Itoa(lines), strconv.Itoa(qtySum))
}

func (g *gen) body855(txIdx int) {
	po := "PO" + fmt.Sprintf("%08d", txIdx)
	g.segment("BAK", "00", g.pick([]string{"AC", "AD", "AK"}), po, g.date(0), "", "", "", "SO"+g.digits(8), g.date(1))
	g.segment("REF", "IA", g.alnum(7), "", g.refComposite("VN"))
	g.segment("DTM", "068", g.date(5+g.r.IntN(20)))
	g.n1Loop("ST")
	if g.r.IntN(2) == 0 {
		g.n1Loop("SF")
	}
	lines := 1 + g.r.IntN(g.cfg.MaxLines)
	for i := 1; i <= lines; i++ {
		qty := 1 + g.r.IntN(500)
		uom := g.pick(uoms)
		g.segment("PO1", strconv.Itoa(i), strconv.Itoa(qty), uom, g.price(), "",
			"BP", g.alnum(10), "VP", g.alnum(8), "UP", gtinCheck(g.digits(11)))
		if g.r.IntN(2) == 0 {
			g.segment("PID", "F", "", "", "", g.pick(adjs)+" "+g.pick(nouns))
		}
		code := g.pick(ackCodes)
		if (code == "IQ" || code == "IB") && qty >= 2 {
			// partial: part accepted now, the rest with the status code later
			part := 1 + g.r.IntN(qty-1)
			g.segment("ACK", "IA", strconv.Itoa(part), uom, "068", g.date(5+g.r.IntN(10)))
			g.segment("ACK", code, strconv.Itoa(qty-part), uom, "068", g.date(15+g.r.IntN(20)))
		} else {
			g.segment("ACK", code, strconv.Itoa(qty), uom, "068", g.date(5+g.r.IntN(20)))
		}
	}
	g.segment("CTT", strconv.Itoa(lines))
}

// body856 writes the standard "0001" hierarchy: shipment > order > pack > item.
// Segment order inside each HL follows the 856 table 2 position order
// (HL, LIN, SN1, PRF, PID, TD1, TD5, REF, MAN, DTM, N1 loop).
func (g *gen) body856(txIdx int) {
	g.segment("BSN", "00", "SH"+fmt.Sprintf("%08d", txIdx), g.date(0), fmt.Sprintf("%02d%02d", g.r.IntN(24), g.r.IntN(60)), "0001")
	g.segment("DTM", "011", g.date(0), fmt.Sprintf("%02d%02d", g.r.IntN(24), g.r.IntN(60)))
	hl := 0
	// shipment
	hl++
	shipID := hl
	g.segment("HL", strconv.Itoa(hl), "", "S", "1")
	cartons := 0
	orders := 1 + g.r.IntN(g.cfg.MaxOrders)
	type pack struct{ items int }
	type order struct{ packs []pack }
	plan := make([]order, orders)
	for i := range plan {
		plan[i].packs = make([]pack, 1+g.r.IntN(g.cfg.MaxPacks))
		for j := range plan[i].packs {
			plan[i].packs[j].items = 1 + g.r.IntN(g.cfg.MaxItems)
			cartons++
		}
	}
	g.segment("TD1", "CTN25", strconv.Itoa(cartons), "", "", "", "G", strconv.Itoa(5+g.r.IntN(2000))+"."+g.digits(1), "LB")
	sc := scacs[g.r.IntN(len(scacs))]
	g.segment("TD5", "B", "2", sc[0], "M", sc[1])
	g.segment("REF", "BM", g.digits(10), "", g.refComposite("CN"))
	if g.r.IntN(2) == 0 {
		g.segment("REF", "CN", g.alnum(12))
	}
	g.segment("DTM", "017", g.date(2+g.r.IntN(5)))
	g.n1Loop("SF")
	g.n1Loop("ST")
	lins := 0
	for _, o := range plan {
		hl++
		orderID := hl
		g.segment("HL", strconv.Itoa(hl), strconv.Itoa(shipID), "O", "1")
		g.segment("PRF", "PO"+g.digits(8), "", "", g.date(-g.r.IntN(20)))
		if g.r.IntN(3) == 0 {
			g.segment("REF", "IA", g.alnum(7))
		}
		for _, p := range o.packs {
			hl++
			packID := hl
			g.segment("HL", strconv.Itoa(hl), strconv.Itoa(orderID), "P", "1")
			if g.r.IntN(4) == 0 {
				g.segment("TD1", "CTN25", "1", "", "", "", "G", strconv.Itoa(1+g.r.IntN(60)), "LB")
			}
			g.segment("MAN", "GM", gtinCheck("0"+g.digits(16)))
			for k := 0; k < p.items; k++ {
				hl++
				lins++
				g.segment("HL", strconv.Itoa(hl), strconv.Itoa(packID), "I", "0")
				g.segment("LIN", strconv.Itoa(k+1), "BP", g.alnum(10), "UP", gtinCheck(g.digits(11)))
				g.segment("SN1", "", strconv.Itoa(1+g.r.IntN(200)), g.pick(uoms))
				if g.r.IntN(2) == 0 {
					g.segment("PID", "F", "", "", "", g.pick(adjs)+" "+g.pick(nouns))
				}
			}
		}
	}
	g.segment("CTT", strconv.Itoa(lins))
}
