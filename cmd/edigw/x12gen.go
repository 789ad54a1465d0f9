package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/edigw/edigw/internal/x12gen"
	"github.com/spf13/cobra"
)

// x12GenCmd is `edigw x12 gen`: the benchmark corpus generator. Its flags are
// parsed with the standard flag package (single or double dash) so that the
// command lines of the peers harness (bench-peers gen/corpus.sh) work as they
// are and the .meta.json files record the same args.
func x12GenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gen -o FILE [flags]",
		Short: "Generate a deterministic X12 850/855/856 corpus for benchmarks",
		Long: `Generate syntactically valid X12 interchanges (850, 855, 856; 004010 or
005010) whose bytes are a pure function of the flags, seed included, and
write FILE.meta.json with the exact segment/element/envelope counts. The same
flags give the same bytes as the peers harness's gen (bench-peers/gen).

  edigw x12 gen -tx 856 -version 005010 -size 100MB -seed 856 -tx-per-ic 100 -o bench/856-100MB.x12
  edigw x12 gen -check bench/856-100MB.x12   # independent envelope/count check

Flags take one or two dashes (-size or --size).`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGen(cmd, args)
		},
	}
}

func runGen(cmd *cobra.Command, args []string) error {
	d := x12gen.Default()
	fs := flag.NewFlagSet("edigw x12 gen", flag.ContinueOnError)
	fs.SetOutput(cmd.ErrOrStderr())
	var (
		txFlag    = fs.String("tx", "850", "transaction set(s): 850, 855, 856 or a comma list (one type per functional group, round robin)")
		version   = fs.String("version", d.Version, "X12 version: 005010 or 004010")
		sizeFlag  = fs.String("size", "1MB", "size target (stops after the transaction that reaches it): e.g. 500KB, 10MB, 100MB, 1GiB; MB = 10^6 bytes")
		txPerIC   = fs.Int("tx-per-ic", d.TxPerIC, "transaction sets per interchange (per functional group when -gs-per-ic > 1); 0 = one interchange for the whole file")
		gsPerIC   = fs.Int("gs-per-ic", d.GSPerIC, "functional groups per interchange")
		seed      = fs.Uint64("seed", d.Seed, "random seed (output is a pure function of the flags)")
		elem      = fs.String("elem", "*", "element separator")
		seg       = fs.String("seg", "~", `segment terminator (\n allowed)`)
		comp      = fs.String("comp", ":", "component separator (ISA16), e.g. ':' or '>'")
		rep       = fs.String("rep", "^", "repetition separator (ISA11, 005010 only)")
		eol       = fs.String("eol", "none", "line break after each segment terminator: none, lf, crlf")
		usage     = fs.String("usage", "P", "ISA15 usage indicator: P or T")
		maxLines  = fs.Int("max-lines", d.MaxLines, "850/855: max PO1 lines per transaction (min 1)")
		maxOrders = fs.Int("max-orders", d.MaxOrders, "856: max order HLs per shipment")
		maxPacks  = fs.Int("max-packs", d.MaxPacks, "856: max pack HLs per order")
		maxItems  = fs.Int("max-items", d.MaxItems, "856: max item HLs per pack")
		noComp    = fs.Bool("no-composites", false, "do not emit composite elements (REF04 C040)")
		out       = fs.String("o", "", "output file (required unless -check)")
		check     = fs.String("check", "", "check an existing file's envelopes and counts instead of generating")
		quiet     = fs.Bool("q", false, "do not print the summary line")
		reuse     = fs.Bool("reuse", false, "do nothing if -o already holds a file made with the same flags (per its .meta.json)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(cmd.ErrOrStderr(), "\n"+cmd.Long)
			return nil
		}
		return err // usage error: exit 2
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gen: unexpected argument %q", fs.Arg(0))
	}
	w := cmd.OutOrStdout()
	if *check != "" {
		res, err := x12gen.Check(*check)
		if err != nil {
			return &exitError{1, fmt.Errorf("check %s: %w", *check, err)}
		}
		fmt.Fprintln(w, res.String())
		return nil
	}
	if *out == "" {
		return errors.New("gen: -o is required")
	}
	if *reuse && x12gen.Reusable(*out, args) {
		if !*quiet {
			fmt.Fprintf(w, "reused %s (same flags)\n", *out)
		}
		return nil
	}
	cfg := d
	cfg.TxTypes = nil
	for _, t := range strings.Split(*txFlag, ",") {
		cfg.TxTypes = append(cfg.TxTypes, strings.TrimSpace(t))
	}
	cfg.Version, cfg.TxPerIC, cfg.GSPerIC, cfg.Seed = *version, *txPerIC, *gsPerIC, *seed
	cfg.MaxLines, cfg.MaxOrders, cfg.MaxPacks, cfg.MaxItems = *maxLines, *maxOrders, *maxPacks, *maxItems
	cfg.Composites = !*noComp
	var err error
	if cfg.Size, err = x12gen.ParseSize(*sizeFlag); err != nil {
		return fmt.Errorf("gen: -size: %w", err)
	}
	for _, d := range []struct {
		name string
		val  string
		dst  *byte
	}{{"elem", *elem, &cfg.Elem}, {"seg", *seg, &cfg.Seg}, {"comp", *comp, &cfg.Comp}, {"rep", *rep, &cfg.Rep}, {"usage", *usage, &cfg.Usage}} {
		if *d.dst, err = x12gen.ParseDelimiter(d.val); err != nil {
			return fmt.Errorf("gen: -%s: %w", d.name, err)
		}
	}
	switch *eol {
	case "none":
		cfg.EOL = ""
	case "lf":
		cfg.EOL = "\n"
	case "crlf":
		cfg.EOL = "\r\n"
	default:
		return errors.New("gen: -eol must be none, lf or crlf")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	meta, err := x12gen.Generate(cfg, *out, args)
	if err != nil {
		return &exitError{1, fmt.Errorf("gen: %w", err)}
	}
	if !*quiet {
		fmt.Fprintf(w, "wrote %s bytes=%d segments=%d elements=%d interchanges=%d groups=%d transactions=%d\n",
			*out, meta.Bytes, meta.Segments, meta.Elements, meta.Interchanges, meta.Groups, meta.Transactions)
	}
	return nil
}
