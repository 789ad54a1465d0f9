package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/edigw/edigw/gateway"
)

// migrateCmd applies the spool's schema migrations. Nodes also migrate at
// start-up (under a lock, so nodes starting together do not race); running
// it first lets a deployment upgrade the schema once, with a role allowed to
// change it, before the nodes start with one that is not.
func migrateCmd() *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "migrate [--config gateway.yaml]",
		Short: "Apply the spool's schema migrations (SQLite or PostgreSQL) and print the schema version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := gateway.LoadConfig(config)
			if err != nil {
				return &exitError{2, err}
			}
			st, err := gateway.OpenStore(cmd.Context(), cfg)
			if err != nil {
				return &exitError{1, err}
			}
			defer st.Close()
			versioned, ok := st.(interface {
				SchemaVersion(context.Context) (int, error)
			})
			if !ok {
				return &exitError{1, fmt.Errorf("spool driver %s reports no schema version", cfg.Spool.Driver)}
			}
			v, err := versioned.SchemaVersion(cmd.Context())
			if err != nil {
				return &exitError{1, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "spool (%s) at schema version %d\n", cfg.Spool.Driver, v)
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "", "gateway.yaml (default: embedded defaults)")
	return c
}
