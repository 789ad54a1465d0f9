package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/schedules"
	"github.com/edigw/edigw/spool"
	"github.com/spf13/cobra"
)

// schedulesCmd shows and drives the partners' polls. Like `edigw spool` it
// opens the spool directly, so it works beside a running gateway.
func schedulesCmd() *cobra.Command {
	var config string
	c := &cobra.Command{Use: "schedules", Short: "The partners' polls: ls, runs, run-now"}
	c.PersistentFlags().StringVar(&config, "config", "", "gateway.yaml (default: embedded defaults, ./data)")
	with := func(fn func(cmd *cobra.Command, g *gateway.Gateway, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := gateway.LoadConfig(config)
			if err != nil {
				return &exitError{2, err}
			}
			g, err := gateway.OpenPolls(cmd.Context(), cfg, newLogger())
			if err != nil {
				return &exitError{1, err}
			}
			defer g.Store().Close()
			return fn(cmd, g, args)
		}
	}

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the polls with their schedule, next run and last run",
		Args:  cobra.NoArgs,
		RunE: with(func(cmd *cobra.Command, g *gateway.Gateway, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			defer w.Flush()
			fmt.Fprintln(w, "PARTNER\tPOLL\tWHERE\tSCHEDULE\tNEXT\tLAST RUN\tSTATUS\tFETCHED")
			now := time.Now()
			for _, p := range g.Partners().Partners() {
				for _, pc := range p.Inbound.Polls {
					next := "-"
					if pc.Cron != nil {
						next = pc.Cron.Next(now).Format(time.RFC3339)
					}
					last, status, fetched := "never", "-", "-"
					runs, err := g.Store().ListRuns(cmd.Context(), spool.RunFilter{Partner: p.ID, Poll: pc.Name, Limit: 1})
					if err != nil {
						return &exitError{1, err}
					}
					if len(runs) == 1 {
						last, status, fetched = runs[0].StartedAt.Format(time.RFC3339), string(runs[0].Status), fmt.Sprint(runs[0].Fetched)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s (%s)\t%s\t%s\t%s\t%s\n", p.ID, pc.Name, pc.URL, pc.Schedule, pc.Location, next, last, status, fetched)
				}
			}
			return nil
		}),
	}

	var partner, poll string
	var limit int
	runs := &cobra.Command{
		Use:   "runs",
		Short: "Show poll runs, newest first, with their errors",
		Args:  cobra.NoArgs,
		RunE: with(func(cmd *cobra.Command, g *gateway.Gateway, _ []string) error {
			rs, err := g.Store().ListRuns(cmd.Context(), spool.RunFilter{Partner: partner, Poll: poll, Limit: limit})
			if err != nil {
				return &exitError{1, err}
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			defer w.Flush()
			fmt.Fprintln(w, "RUN\tPARTNER\tPOLL\tTRIGGER\tNODE\tSTARTED\tTOOK\tSTATUS\tSEEN\tFETCHED\tSKIPPED\tFAILED")
			for _, r := range rs {
				took := "running"
				if !r.EndedAt.IsZero() {
					took = r.EndedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.ID, r.Partner, r.Poll, r.Trigger, r.Owner,
					r.StartedAt.Format(time.RFC3339), took, r.Status, r.Seen, r.Fetched, r.Skipped, r.Failed)
				for _, e := range r.Errors {
					fmt.Fprintf(w, "\t  error: %s\n", oneLine(e))
				}
			}
			return nil
		}),
	}
	runs.Flags().StringVar(&partner, "partner", "", "only this partner")
	runs.Flags().StringVar(&poll, "poll", "", "only this poll")
	runs.Flags().IntVar(&limit, "limit", 20, "how many runs")

	runNow := &cobra.Command{
		Use:   "run-now PARTNER/POLL",
		Short: "Run a poll now in this process and print what it did",
		Long: `Run a poll now, in this process, and wait for it. The run takes the poll's lease
in the spool, so it never overlaps a scheduled run of a running gateway; the
gateway's workers process what it fetched. Exit status 1 if the run failed or
some files failed, 3 if the poll is running elsewhere.`,
		Args: cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, g *gateway.Gateway, args []string) error {
			partner, name, ok := strings.Cut(args[0], "/")
			if !ok {
				return &exitError{2, fmt.Errorf("want PARTNER/POLL, e.g. globex/globex-ftp; see edigw schedules ls")}
			}
			var poll *schedules.Poll
			for _, p := range gateway.Polls(g.Partners()) {
				if p.Partner == partner && p.Name == name {
					poll = &p
				}
			}
			if poll == nil {
				return &exitError{2, fmt.Errorf("partner %s: poll %s: %w (see edigw schedules ls)", partner, name, schedules.ErrUnknownPoll)}
			}
			r, err := g.Runner().Run(cmd.Context(), poll, "manual:cli")
			if errors.Is(err, spool.ErrPollBusy) {
				return &exitError{3, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "run %d: %s: seen %d, fetched %d, skipped %d, failed %d\n", r.ID, r.Status, r.Seen, r.Fetched, r.Skipped, r.Failed)
			for _, e := range r.Errors {
				fmt.Fprintf(cmd.OutOrStdout(), "  error: %s\n", e)
			}
			if err != nil || r.Status != spool.RunOK {
				return &exitError{1, fmt.Errorf("poll %s/%s: %s", partner, name, r.Status)}
			}
			return nil
		}),
	}
	c.AddCommand(ls, runs, runNow)
	return c
}
