// Command edigw is the partner EDI and file-transfer gateway.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := &cobra.Command{
		Use:           "edigw",
		Short:         "Partner EDI and file-transfer gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(x12Cmd())
	root.AddCommand(partnersCmd(), mapCmd(), serveCmd(), erpSinkCmd(), spoolCmd(), schedulesCmd(), migrateCmd(), benchCmd())
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "edigw:", ee.err)
			}
			os.Exit(ee.code)
		}
		// cobra's own errors are usage errors: bad flags, wrong arguments.
		fmt.Fprintln(os.Stderr, "edigw:", err)
		os.Exit(2)
	}
}
