// Command x12baseline runs the two benchmark baselines of "edigw x12 bench"
// (the peers harness's go-floor-indexbyte and go-naive-split) in a process
// of their own, with nothing but the standard library linked in, and prints
// the harness's result line. "edigw x12 bench" uses it when it sits next to
// the edigw binary (make bench builds both into bin/).
//
//	x12baseline floor FILE
//	x12baseline naive FILE
package main

import (
	"fmt"
	"os"

	"github.com/edigw/edigw/internal/x12bench"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: x12baseline floor|naive FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "floor":
		err = x12bench.Measure(os.Stdout, "go-floor-indexbyte", os.Args[2], x12bench.Floor)
	case "naive":
		err = x12bench.Measure(os.Stdout, "go-naive-split", os.Args[2], x12bench.Naive)
	default:
		fmt.Fprintln(os.Stderr, "usage: x12baseline floor|naive FILE")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "x12baseline:", err)
		os.Exit(1)
	}
}
