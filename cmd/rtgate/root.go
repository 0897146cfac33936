package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/config/logswitch"
)

// app is what the commands share: where they write, and hooks for tests.
type app struct {
	stdout, stderr io.Writer
	// listening, if set, is called with the HTTP address of `rtgate run` or
	// `rtgate sfu` once it listens (and, for sfu, has printed its lines),
	// before it serves.
	listening func(net.Addr)
}

const rootLong = `rtgate bridges media that lives outside WebRTC (RTP/UDP, files, cameras,
WHIP publishers) into a Realtime SFU as published tracks, and brings tracks back
out (recordings, RTP/UDP, WHEP viewers). It forwards RTP; it never transcodes.

The SFU is the Cloudflare Realtime SFU (realtime.url: an https://.../v1 URL,
with realtime.app_id and realtime.app_secret) or rtgate's embedded SFU, which
serves the same HTTP API (realtime.url: embedded, the default).

Configuration comes from, in increasing precedence:
  1. defaults (see deploy/rtgate.yaml, which lists every key),
  2. the YAML file given with -c/--config,
  3. environment variables: RTGATE_ and the key path in capitals with "_"
     for ".", e.g. RTGATE_REALTIME_URL, RTGATE_REALTIME_APP_SECRET,
     RTGATE_HTTP_LISTEN; durations as "30s", lists comma-separated
     (RTGATE_WEBRTC_PUBLIC_IPS=1.2.3.4,5.6.7.8), levels per log component
     as pairs (RTGATE_LOG_LEVELS=pion=warn,sfu=debug),
  4. command-line flags.
Unknown keys in the file are errors. "rtgate check" validates a configuration.`

func newRootCommand(a *app) *cobra.Command {
	def := config.Default()
	root := &cobra.Command{
		Use:           "rtgate",
		Short:         "Media gateway between RTP, files, cameras, WHIP/WHEP and a Realtime SFU",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Suggest "check" for "chek".
		SuggestionsMinimumDistance: 2,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			err := fmt.Errorf("unknown command %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				err = fmt.Errorf("%w; did you mean %q?", err, s[0])
			}
			return &usageError{err}
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := root.PersistentFlags()
	pf.String("log-level", def.Log.Level, "log level: debug, info, warn or error (log.level; log.levels\nsets one per component)")
	pf.String("log-format", def.Log.Format, "log format on stderr: text or json (log.format)")
	config.BindFlag(pf, "log-level", "log.level")
	config.BindFlag(pf, "log-format", "log.format")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(
		newRunCommand(a),
		newPublishCommand(a),
		newRecordCommand(a),
		newDevicesCommand(a),
		newSFUCommand(a),
		newCheckCommand(a),
		newVersionCommand(a),
		newBenchCommand(a), newBenchWorkerCommand(a),
	)
	return root
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))}
	}
	return nil
}

// addConfigFlag adds -c/--config.
func addConfigFlag(fs *pflag.FlagSet) {
	fs.StringP("config", "c", "", "YAML config file (deploy/rtgate.yaml lists every key); without one:\ndefaults, RTGATE_* environment variables and flags")
}

// addAppFlags adds the app id and secret flags.
func addAppFlags(fs *pflag.FlagSet) {
	fs.String("app-id", "", `Realtime app id (realtime.app_id; the embedded SFU's default is "rtgate")`)
	fs.String("app-secret", "", "Realtime app secret (realtime.app_secret); visible to other local users\nin the process list: prefer --app-secret-file or RTGATE_REALTIME_APP_SECRET")
	fs.String("app-secret-file", "", "file holding the Realtime app secret, trailing whitespace trimmed\n(realtime.app_secret_file)")
	config.BindFlag(fs, "app-id", "realtime.app_id")
	config.BindFlag(fs, "app-secret", "realtime.app_secret")
	config.BindFlag(fs, "app-secret-file", "realtime.app_secret_file")
}

// addRealtimeFlags adds the flags of every command that talks to a Realtime
// SFU: -c/--config, --realtime-url, --app-id, --app-secret and
// --app-secret-file. Each command that publishes to or pulls from the SFU
// calls it, so they all read the same keys the same way.
func addRealtimeFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	addConfigFlag(fs)
	fs.String("realtime-url", config.Default().Realtime.URL,
		"\"embedded\" or the Realtime API base URL including /v1,\ne.g. https://rtc.live.cloudflare.com/v1 (realtime.url)")
	config.BindFlag(fs, "realtime-url", "realtime.url")
	addAppFlags(fs)
}

// loadConfig loads the configuration of cmd (its -c file, the
// environment, its flags) and validates it, reporting every problem.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	path, _ := cmd.Flags().GetString("config") // "" when the command has no -c
	cfg, err := config.Check(path, cmd.Flags())
	var errs config.Errors
	if errors.As(err, &errs) {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// newLogger makes the logger of cmd from its configuration and logs, at
// debug, where each key that is not at its default came from (never the
// values: one is the secret).
func newLogger(cmd *cobra.Command, cfg *config.Config, stderr io.Writer) *slog.Logger {
	logger, _ := newSwitchedLogger(cmd, cfg, stderr)
	return logger
}

// newSwitchedLogger is newLogger with the Switch behind it, through which
// a reload applies a new log.* (levels, per-component levels, format) to
// every logger made from it.
func newSwitchedLogger(cmd *cobra.Command, cfg *config.Config, stderr io.Writer) (*slog.Logger, *logswitch.Switch) {
	sw := cfg.Log.NewLogSwitch(stderr)
	logger := sw.Logger()
	if logger.Enabled(cmd.Context(), slog.LevelDebug) {
		path, _ := cmd.Flags().GetString("config")
		attrs := []any{"file", path}
		for _, k := range config.Keys() {
			if src := cfg.Source(k); src != "default" {
				attrs = append(attrs, k, src)
			}
		}
		logger.Debug("configuration sources", attrs...)
	}
	return logger, sw
}
