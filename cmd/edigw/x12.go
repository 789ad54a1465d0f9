package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/edigw/edigw/edi"
	"github.com/spf13/cobra"
)

func x12Cmd() *cobra.Command {
	c := &cobra.Command{Use: "x12", Short: "Parse, validate and acknowledge X12 files"}
	c.AddCommand(x12ParseCmd(), x12ValidateCmd(), x12AckCmd(), x12BenchCmd(), x12GenCmd())
	return c
}

// openInput opens FILE, or stdin for "-".
func openInput(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}

// process runs edi.Process over the named file; input errors exit 1.
func process(name string, opt edi.Options) error {
	f, err := openInput(name)
	if err != nil {
		return &exitError{1, err}
	}
	defer f.Close()
	if err := edi.Process(f, opt); err != nil { // edi.Reader buffers
		return &exitError{1, fmt.Errorf("%s: %w", name, err)}
	}
	return nil
}

func x12ParseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "parse FILE",
		Short: "Print the loop tree of every transaction set as JSON (docs/x12-json.md)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			jw := edi.NewJSONWriter(cmd.OutOrStdout())
			var opt edi.Options
			jw.Hook(&opt)
			err := process(args[0], opt)
			if cerr := jw.Close(); err == nil && cerr != nil {
				err = &exitError{1, cerr}
			}
			return err
		},
	}
}

func x12ValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Print findings with positions; exit 1 when anything is rejected or has errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			bad := false
			var opt edi.Options
			opt.OnSet = func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
				fmt.Fprintf(out, "  set %s %s: %s\n", s.ID, s.Control, verdict(s.Status))
				for _, f := range s.Findings {
					fmt.Fprintf(out, "    %s\n", f)
				}
				if s.Status != "A" {
					bad = true
				}
			}
			opt.OnGroupStart = func(ic *edi.Interchange, g *edi.Group) {
				fmt.Fprintf(out, " group %s %s (%s)\n", g.FunctionalID, g.Control, g.Version)
			}
			opt.OnGroup = func(ic *edi.Interchange, g *edi.Group) {
				acc, _ := g.Counts()
				fmt.Fprintf(out, " group %s %s: AK9 %s, %d of %d sets accepted\n", g.FunctionalID, g.Control, g.Status(), acc, len(g.Sets))
				for _, f := range g.Findings {
					fmt.Fprintf(out, "    %s\n", f)
				}
				if g.Status() != "A" {
					bad = true
				}
			}
			opt.OnInterchangeStart = func(ic *edi.Interchange) {
				fmt.Fprintf(out, "interchange %s from %s/%s to %s/%s (%s)\n", ic.Control, ic.SenderQualifier, ic.SenderID, ic.ReceiverQualifier, ic.ReceiverID, ic.Version)
			}
			opt.OnInterchange = func(ic *edi.Interchange) {
				for _, t := range ic.Tolerances {
					fmt.Fprintf(out, "  tolerated: %s\n", t.Msg)
				}
				a, note := edi.TA1Code(ic)
				fmt.Fprintf(out, "interchange %s: TA1 %s %s\n", ic.Control, a, note)
				for _, f := range ic.Findings {
					fmt.Fprintf(out, "  %s\n", f)
				}
				if ic.Rejected() {
					bad = true
				}
			}
			if err := process(args[0], opt); err != nil {
				return err
			}
			if bad {
				return &exitError{1, nil}
			}
			return nil
		},
	}
}

func verdict(s string) string {
	switch s {
	case "A":
		return "accepted"
	case "E":
		return "accepted with errors"
	}
	return "rejected"
}

func x12AckCmd() *cobra.Command {
	var control int64
	var eol bool
	c := &cobra.Command{
		Use:   "ack FILE",
		Short: "Write the TA1/997/999 acknowledgement interchange(s) for FILE to stdout",
		Long: `Write the acknowledgement interchange(s) for FILE to stdout: ISA, a TA1 when
ISA14=1 or the envelope is bad, one GS*FA group with a 997 (004010) or 999
(005010X231A1) per acknowledged functional group, GE, IEA.

Exit 0: acknowledged, whatever the verdict. Exit 1: the input could not be
acknowledged at all (empty, not X12). Exit 2: usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := bufio.NewWriter(cmd.OutOrStdout())
			next := control
			ao := edi.AckOptions{Control: func() (int64, error) {
				n := next
				next++
				return n, nil
			}}
			if eol {
				ao.EOL = "\n"
			}
			var werr error
			acked := 0
			var opt edi.Options
			opt.OnInterchange = func(ic *edi.Interchange) {
				if werr != nil {
					return
				}
				ok, err := edi.WriteAck(out, ic, ao)
				if err != nil {
					werr = err
				}
				if ok {
					acked++
				} else {
					fmt.Fprintf(os.Stderr, "edigw: interchange %s: no acknowledgement due (only functional acknowledgements inside, ISA14=0)\n", ic.Control)
				}
			}
			err := process(args[0], opt)
			if ferr := out.Flush(); werr == nil {
				werr = ferr
			}
			if werr != nil {
				return &exitError{1, werr}
			}
			var ee *exitError
			if errors.As(err, &ee) && next > control {
				// Interchanges before the bad data were acknowledged.
				fmt.Fprintln(os.Stderr, "edigw:", ee.err)
				return nil
			}
			return err
		},
	}
	c.Flags().Int64Var(&control, "control", 1, "ISA13/GS06 of the first acknowledgement interchange")
	c.Flags().BoolVar(&eol, "newline", false, "write a line break after every segment")
	return c
}
