package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/spool"
	"github.com/spf13/cobra"
)

// spoolCmd inspects and drives messages. It opens the spool database
// directly (SQLite in WAL mode, or PostgreSQL, lets it run beside `edigw
// serve`).
func spoolCmd() *cobra.Command {
	var config string
	c := &cobra.Command{Use: "spool", Short: "Inspect and drive messages: ls, show, replay, retry, resolve"}
	c.PersistentFlags().StringVar(&config, "config", "", "gateway.yaml (default: embedded defaults, ./data)")
	// with opens the spool for one subcommand and closes it after.
	with := func(fn func(cmd *cobra.Command, st spool.Store, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := gateway.LoadConfig(config)
			if err != nil {
				return &exitError{2, err}
			}
			st, err := gateway.OpenStore(cmd.Context(), cfg)
			if err != nil {
				return &exitError{1, err}
			}
			defer st.Close()
			return fn(cmd, st, args)
		}
	}
	var partner, state, typ string
	var limit int
	ls := &cobra.Command{
		Use:   "ls [files|documents]",
		Short: "List files (default) or documents, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: with(func(cmd *cobra.Command, st spool.Store, args []string) error {
			var states []spool.State
			if state != "" {
				for _, s := range strings.Split(state, ",") {
					states = append(states, spool.State(s))
				}
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			defer w.Flush()
			if len(args) == 1 && strings.HasPrefix(args[0], "doc") {
				var types []string
				if typ != "" {
					types = strings.Split(typ, ",")
				}
				docs, _, err := st.ListDocuments(cmd.Context(), spool.DocumentFilter{Partner: partner, States: states, Types: types, Page: spool.Page{Limit: limit}})
				if err != nil {
					return &exitError{1, err}
				}
				fmt.Fprintln(w, "ID\tPARTNER\tTYPE\tCONTROL\tKEY\tSTATE\tATTEMPTS\tLAST ERROR")
				for _, d := range docs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%d\t%s\n", d.ID, d.Partner, d.Type, d.GroupControl, d.SetControl, d.BusinessKey, d.State, d.Attempts, oneLine(d.LastError))
				}
				return nil
			}
			files, _, err := st.ListFiles(cmd.Context(), spool.FileFilter{Partner: partner, States: states, Page: spool.Page{Limit: limit}})
			if err != nil {
				return &exitError{1, err}
			}
			fmt.Fprintln(w, "ID\tPARTNER\tCHANNEL\tNAME\tSIZE\tRECEIVED\tSTATE\tLAST ERROR")
			for _, f := range files {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", f.ID, f.Partner, f.Channel, f.Name, f.Blob.Size, f.ReceivedAt.Format(time.RFC3339), f.State, oneLine(f.LastError))
			}
			return nil
		}),
	}
	ls.Flags().StringVar(&partner, "partner", "", "only this partner")
	ls.Flags().StringVar(&state, "state", "", "only these states (comma separated)")
	ls.Flags().StringVar(&typ, "type", "", "documents: only these types (comma separated)")
	ls.Flags().IntVar(&limit, "limit", 50, "at most this many")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a file or document with its event timeline",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, st spool.Store, args []string) error {
			return showItem(cmd.Context(), cmd.OutOrStdout(), st, spool.ID(args[0]))
		}),
	}
	var to, comment string
	// Actions go through gateway/ops like the API's and the console's: the
	// same checks, and an entry in the audit log (as the local user, admin).
	cli := ops.Actor{Name: "cli:" + cmp.Or(os.Getenv("USER"), "unknown"), Role: ops.Admin}
	replay := &cobra.Command{
		Use:   "replay ID --to STATE",
		Short: "Run a message again from a pipeline state (received, parsed, mapped, delivered ...)",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, st spool.Store, args []string) error {
			svc := &ops.Service{Store: st}
			if err := svc.Replay(cmd.Context(), cli, spool.ID(args[0]), spool.State(to), comment); err != nil {
				return &exitError{1, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s replayed from %s\n", args[0], to)
			return nil
		}),
	}
	replay.Flags().StringVar(&to, "to", "", "pipeline state to run again from (required)")
	replay.Flags().StringVar(&comment, "comment", "", "why (kept in the event log)")
	replay.MarkFlagRequired("to")
	retry := &cobra.Command{
		Use:   "retry ID",
		Short: "Try a retrying message's current stage again now",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, st spool.Store, args []string) error {
			svc := &ops.Service{Store: st}
			msg, err := svc.Retry(cmd.Context(), cli, spool.ID(args[0]), "retry now")
			if err != nil {
				return &exitError{1, err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		}),
	}
	resolve := &cobra.Command{
		Use:   "resolve ID --comment TEXT",
		Short: "Close a held or dead message by hand, with the reason (held becomes dead; the comment is logged)",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, st spool.Store, args []string) error {
			svc := &ops.Service{Store: st}
			if err := svc.Resolve(cmd.Context(), cli, spool.ID(args[0]), comment); err != nil {
				return &exitError{1, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s resolved\n", args[0])
			return nil
		}),
	}
	resolve.Flags().StringVar(&comment, "comment", "", "what was done (required)")
	resolve.MarkFlagRequired("comment")
	c.AddCommand(ls, show, replay, retry, resolve)
	return c
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

func showItem(ctx context.Context, out io.Writer, st spool.Store, id spool.ID) error {
	switch id.Kind() {
	case spool.KindFile:
		f, err := st.GetFile(ctx, id)
		if err != nil {
			return &exitError{1, err}
		}
		fmt.Fprintf(out, "file %s\n  partner %s, channel %s, name %s, %s\n  received %s, state %s, attempts %d\n", f.ID, f.Partner, f.Channel, f.Name, f.Blob, f.ReceivedAt.Format(time.RFC3339), f.State, f.Attempts)
		if f.DuplicateOf != "" {
			fmt.Fprintf(out, "  duplicate of %s\n", f.DuplicateOf)
		}
		ics, _ := st.ListInterchanges(ctx, id)
		for _, ic := range ics {
			fmt.Fprintf(out, "  interchange %s ISA13 %s from %s, state %s, ack %s %s %s\n", ic.ID, ic.Control, ic.Sender, ic.State, ic.Ack.Kind, ic.Ack.Status, ic.Ack.Control)
		}
		docs, _, _ := st.ListDocuments(ctx, spool.DocumentFilter{FileID: id, Page: spool.Page{Limit: 1000, Ascending: true}})
		for _, d := range docs {
			fmt.Fprintf(out, "  document %s %s %s/%s %s: %s %s\n", d.ID, d.Type, d.GroupControl, d.SetControl, d.BusinessKey, d.State, oneLine(d.LastError))
		}
	case spool.KindDocument:
		d, err := st.GetDocument(ctx, id)
		if err != nil {
			return &exitError{1, err}
		}
		fmt.Fprintf(out, "document %s\n  file %s, partner %s, type %s, control %s/%s, key %s\n  idempotency key %s\n  state %s, attempts %d, last error %s\n  ERP response %d\n",
			d.ID, d.FileID, d.Partner, d.Type, d.GroupControl, d.SetControl, d.BusinessKey, d.IdempotencyKey, d.State, d.Attempts, d.LastError, d.Response.Status)
	default:
		return &exitError{1, fmt.Errorf("%s: not a file or document id", id)}
	}
	evs, err := st.Events(ctx, id)
	if err != nil {
		return &exitError{1, err}
	}
	fmt.Fprintln(out, "  events:")
	for _, e := range evs {
		fmt.Fprintf(out, "    %s %-10s %-8s %s→%s %s\n", e.At.Format(time.RFC3339), e.Kind, e.Actor, e.From, e.To, oneLine(e.Message))
	}
	return nil
}
