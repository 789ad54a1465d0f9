package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/gateway/erpsink"
	"github.com/spf13/cobra"
)

func newLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func serveCmd() *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "serve [--config gateway.yaml]",
		Short: "Run the gateway: SFTP listener, pipeline workers, ERP delivery, archive",
		Long: `Run the gateway. Without --config it runs on embedded defaults: SQLite spool and
local directories under ./data, SFTP on :2022, the example partners from
deploy/examples/partners, and a built-in ERP sink on 127.0.0.1:9090 that
records the documents it receives (see gateway/config.go for every setting).
SIGINT/SIGTERM stop it gracefully: running stages finish, leases are released.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tuneRuntime()
			cfg, err := gateway.LoadConfig(config)
			if err != nil {
				return &exitError{2, err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			g, err := gateway.New(ctx, cfg, newLogger())
			if err != nil {
				return &exitError{1, err}
			}
			if err := g.Run(ctx); err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "", "gateway.yaml (default: embedded defaults)")
	return c
}

// tuneRuntime sets the runtime for a gateway, unless the environment does.
//
// GOGC=400: a gateway's live heap is small (tens of MB: the parser's memory
// is bounded by its largest transaction set) and its work allocates a lot,
// so this costs ~100 MB and saves ~10 % of the CPU in bench e2e.
//
// GOMAXPROCS at 2× its default (the CPUs, or a container's CPU limit): the
// gateway's goroutines spend much of their time in blocking system calls
// (file creates, syncs, the WAL's fsync), and a goroutine in a system call
// keeps its P until the runtime's monitor hands it over; with one P per
// CPU, goroutines ready to run (an SFTP reply, a finished commit) waited
// behind those. In bench e2e on 2 CPUs (1000 files, 16 connections), two
// alternating series: 2 Ps 303-334 sets/s against 4 Ps 422-530; 4 Ps
// 370-449 against 8 Ps 340-399 (more running threads than that take CPU
// time from the spool's single writer).
func tuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0)) // the default: the CPUs, or a container's CPU limit
	}
}

func erpSinkCmd() *cobra.Command {
	var listen, dir string
	c := &cobra.Command{
		Use:   "erp-sink",
		Short: "Run the built-in test ERP: records each posted document once per Idempotency-Key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return erpsink.Run(ctx, listen, dir, newLogger())
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:9090", "listen address")
	c.Flags().StringVar(&dir, "dir", "data/erp-sink", "where received documents are kept (\"\" = memory)")
	return c
}
