package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edigw/edigw/mapping"
	"github.com/edigw/edigw/partners"
	"github.com/spf13/cobra"
)

// loadPartners loads DIR or prints every problem and exits 1.
func loadPartners(cmd *cobra.Command, dir string) (*partners.Set, error) {
	set, err := partners.LoadDir(dir)
	if err != nil {
		var le *partners.LoadError
		if !errors.As(err, &le) {
			return nil, &exitError{1, err}
		}
		for _, e := range le.Errs {
			fmt.Fprintln(cmd.ErrOrStderr(), e)
		}
		return nil, &exitError{1, fmt.Errorf("%s: %d problem(s); see partners lint", dir, len(le.Errs))}
	}
	return set, nil
}

// testEnvelope is the partner's own envelope with fixed control numbers
// and clock, so expected X12 stays byte-for-byte stable.
func testEnvelope(p *partners.Partner) *mapping.Envelope {
	if p.X12 == nil {
		return nil
	}
	e := p.Envelope("PO", partners.ISAID{}, partners.Controls{Interchange: 1, Group: 1, Set: "0001"},
		time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC))
	return &e
}

func partnersTestCmd() *cobra.Command {
	var update bool
	var only string
	c := &cobra.Command{
		Use:   "test DIR",
		Short: "Run every partner's mapping tests (sample in, expected JSON or X12 out, or an expected error)",
		Long: `Run the tests: of every mapping of every partner under DIR. Each sample is mapped
and compared with its expected output; a difference is printed as a diff
(-expected +got). With --update the expected files are rewritten from the
output (review the change before committing it). Exit 1 when any test fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := loadPartners(cmd, args[0])
			if err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			pass, fail, none := 0, 0, 0
			for _, p := range set.Partners() {
				if only != "" && p.ID != only {
					continue
				}
				for _, d := range p.Documents {
					if d.Map == nil {
						continue
					}
					if len(d.Map.Tests) == 0 {
						fmt.Fprintf(out, "?    %s %s: %s has no tests\n", p.ID, d.Name(), d.MapFile)
						none++
						continue
					}
					for _, r := range d.Map.RunTests(mapping.TestOptions{Update: update, Envelope: testEnvelope(p)}) {
						rel, _ := filepath.Rel(p.Dir, filepath.Join(filepath.Dir(d.Map.File), r.Test.Input))
						switch {
						case r.Pass && r.Updated:
							fmt.Fprintf(out, "upd  %s %s %s: %s rewritten\n", p.ID, d.Name(), rel, r.Test.Expect)
							pass++
						case r.Pass:
							fmt.Fprintf(out, "ok   %s %s %s\n", p.ID, d.Name(), rel)
							pass++
						default:
							fail++
							fmt.Fprintf(out, "FAIL %s %s %s (%s:%d)\n", p.ID, d.Name(), rel, d.Map.File, r.Test.Line)
							if r.Err != nil {
								fmt.Fprintf(out, "     %s\n", strings.ReplaceAll(r.Err.Error(), "\n", "\n     "))
							}
							if r.Diff != "" {
								fmt.Fprintf(out, "     %s\n", strings.ReplaceAll(strings.TrimSpace(r.Diff), "\n", "\n     "))
							}
						}
					}
				}
			}
			fmt.Fprintf(out, "%d passed, %d failed, %d mapping(s) without tests\n", pass, fail, none)
			if fail > 0 {
				return &exitError{1, nil}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&update, "update", false, "rewrite expected outputs from the actual ones")
	c.Flags().StringVar(&only, "partner", "", "only this partner")
	return c
}

func mapCmd() *cobra.Command {
	var dir, partnerID string
	c := &cobra.Command{
		Use:   "map --partner ID FILE",
		Short: "Dry run: map an X12 or CSV file with a partner's mappings; canonical JSON on stdout, schema-checked",
		Long: `Map FILE the way the gateway would for partner ID: every X12 transaction set
with the partner's mapping for its type, or a CSV file with the feed whose
match pattern fits the file name. The documents are printed as a JSON array;
every problem (X12 rejection, mapping error, schema violation) goes to
stderr and the exit code is 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := loadPartners(cmd, dir)
			if err != nil {
				return err
			}
			p := set.ByID(partnerID)
			if p == nil {
				return &exitError{2, fmt.Errorf("no partner %q in %s", partnerID, dir)}
			}
			docs, err := mapFile(p, args[0])
			if len(docs) > 0 {
				b, _ := json.MarshalIndent(docs, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			}
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "partners", "partner profiles folder")
	c.Flags().StringVar(&partnerID, "partner", "", "partner id (required)")
	c.MarkFlagRequired("partner")
	return c
}

// mapFile maps a CSV file by its feed, or every set of an X12 file by type.
func mapFile(p *partners.Partner, name string) ([]mapping.Document, error) {
	env := mapping.Env{FileName: filepath.Base(name), Partner: p.ID}
	if d := p.CSVDocument(filepath.Base(name)); d != nil {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		doc, warns, err := d.Map.MapCSV(f, env)
		for _, w := range warns {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil {
			return nil, err
		}
		return []mapping.Document{doc}, nil
	}
	var docs []mapping.Document
	var errs []error
	for _, d := range p.Documents {
		if d.Map == nil || d.Format != partners.FormatX12 || d.Direction != partners.DirectionInbound {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		got, warns, err := d.Map.MapFile(f, env)
		f.Close()
		for _, w := range warns {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil && !strings.Contains(err.Error(), "no "+d.Set+" transaction set") {
			errs = append(errs, err)
		}
		docs = append(docs, got...)
	}
	if len(docs) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: partner %s has no inbound mapping for anything in this file", name, p.ID))
	}
	return docs, errors.Join(errs...)
}
