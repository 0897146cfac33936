// Command rtgate is the rtgate media gateway: `rtgate run` is the daemon,
// `rtgate sfu` the embedded Realtime SFU on its own, `rtgate check`
// validates a configuration and `rtgate version` says what was built. The
// commands only wire config, gateway and the terminal together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rtgate/rtgate/config"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "dev"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second
	// Ctrl-C ends a shutdown that hangs.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code: 0 on
// success, 2 for a usage error, 1 otherwise. Errors go to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runApp(ctx, &app{stdout: stdout, stderr: stderr}, args)
}

func runApp(ctx context.Context, a *app, args []string) int {
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var (
		exit  *exitError
		usage *usageError
		cerrs config.Errors
	)
	switch {
	case errors.As(err, &exit):
		return exit.code
	case errors.As(err, &usage):
		fmt.Fprintf(a.stderr, "rtgate: %v\nRun '%s --help' for usage.\n", usage.err, cmd.CommandPath())
		return 2
	case errors.As(err, &cerrs):
		// One problem per line, each naming its key path and value.
		msg, _, _ := strings.Cut(err.Error(), "\n")
		if msg == cerrs[0].Error() {
			msg = "invalid configuration:"
		}
		fmt.Fprintln(a.stderr, "rtgate:", msg)
		for _, e := range cerrs {
			fmt.Fprintln(a.stderr, "  "+e.Error())
		}
		return 1
	default:
		fmt.Fprintln(a.stderr, "rtgate:", err)
		return 1
	}
}

// exitError ends the process with code after the command has already said
// why.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a command line that does not parse.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
