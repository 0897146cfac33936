package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/config"
)

const checkLong = `Load a configuration as "rtgate run" would (defaults, the -c file, RTGATE_*
environment variables, flags) and validate every key without starting
anything.

On success it prints one line to stdout and exits 0:
  config ok: realtime embedded (app rtgate, secret generated per run), http 127.0.0.1:8080

Otherwise it prints every problem to stderr, one per line with its key path
and value, and exits 1:
  realtim: unknown key (line 3; did you mean "realtime"?)
  realtime.url: "ftp://x": scheme must be http, https or "embedded"

A file that "rtgate check" accepts will not fail "rtgate run" for its
content; the ports may still be taken when it runs.`

func newCheckCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "check -c FILE",
		Short:   "Validate a configuration and print a summary",
		Long:    checkLong,
		Example: "  rtgate check -c deploy/rtgate.yaml",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("config")
			cfg, err := config.Check(path, cmd.Flags())
			if err != nil {
				var errs config.Errors
				if errors.As(err, &errs) {
					for _, e := range errs {
						fmt.Fprintln(a.stderr, e)
					}
				} else {
					fmt.Fprintln(a.stderr, err)
				}
				return &exitError{code: 1}
			}
			fmt.Fprintln(a.stdout, summary(cfg))
			return nil
		},
	}
	addRealtimeFlags(cmd)
	return cmd
}

// summary is the one-line description of a valid configuration.
func summary(cfg *config.Config) string {
	secret := "secret generated per run"
	if s, err := cfg.ResolveSecret(); err == nil && s.Value != "" {
		secret = "secret from " + s.Source
	}
	rt := "embedded"
	if !cfg.IsEmbedded() {
		rt = cfg.Realtime.URL
	}
	return fmt.Sprintf("config ok: realtime %s (app %s, %s), http %s", rt, cfg.AppID(), secret, cfg.HTTP.Listen)
}
