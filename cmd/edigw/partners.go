package main

import (
	"errors"
	"fmt"

	"github.com/edigw/edigw/partners"
	"github.com/spf13/cobra"
)

func partnersCmd() *cobra.Command {
	c := &cobra.Command{Use: "partners", Short: "Check trading-partner profiles (partners/<id>/partner.yaml)"}
	c.AddCommand(partnersLintCmd(), partnersTestCmd())
	return c
}

func partnersLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint DIR",
		Short: "Load and validate every partner under DIR; print each problem as file:line:col: field: message",
		Long: `Load and validate every partner profile under DIR (DIR/<id>/partner.yaml and the
mapping specs it names), the way the gateway loads them.

Every problem of every partner is printed on stderr, one per line, starting with
file:line:col, and the exit code is 1. Without problems, one summary line per
partner is printed on stdout and the exit code is 0.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := partners.LoadDir(args[0])
			if err != nil {
				var le *partners.LoadError
				if !errors.As(err, &le) {
					return &exitError{1, err}
				}
				for _, e := range le.Errs {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return &exitError{1, nil}
			}
			for _, p := range set.Partners() {
				fmt.Fprintln(cmd.OutOrStdout(), p.Summary())
			}
			if set.Len() == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "edigw: no partner folders in %s\n", args[0])
			}
			return nil
		},
	}
}
