package main

import (
	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway"
)

const runLong = `Run the rtgate daemon until SIGINT or SIGTERM.

It publishes every configured stream (streams: in the config file) into the
SFU, each as one Realtime session that is replaced, with backoff, when it
fails. It serves HTTP on http.listen:
  GET /healthz           200 "ok" while running
  GET /api/streams       each stream's state, session, tracks and counters
  /v1/apps/{appId}/...   the embedded SFU's Realtime API, when realtime.url
  /apps/{appId}/...      is "embedded" (the default)

With realtime.url "embedded", the SFU's app id is realtime.app_id ("rtgate"
when empty) and its secret realtime.app_secret or realtime.app_secret_file,
or one generated for this run when neither is set (rtgate's own client then
is the only one that knows it). rtgate reaches the embedded SFU over loopback
HTTP exactly as it reaches Cloudflare's, with an http(s) realtime.url and its
app id and secret.

rtgate's own PeerConnections share one UDP port (webrtc.udp_port); the
embedded SFU has another (sfu.udp_port).

On SIGINT or SIGTERM it stops the streams (closing their tracks on the SFU),
stops accepting requests, lets running ones finish (at most 10 s), closes the
SFU's sessions and exits 0. A second signal exits at once.`

func newRunCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [-c FILE]",
		Short: "Run the rtgate daemon",
		Long:  runLong,
		Example: `  rtgate run -c /etc/rtgate/rtgate.yaml
  rtgate run --listen 0.0.0.0:8080 --log-level debug
  RTGATE_REALTIME_URL=https://rtc.live.cloudflare.com/v1 RTGATE_REALTIME_APP_ID=... \
    RTGATE_REALTIME_APP_SECRET_FILE=/etc/rtgate/secret rtgate run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			d, err := gateway.New(cfg, newLogger(cmd, cfg, a.stderr))
			if err != nil {
				return err
			}
			if a.listening != nil {
				a.listening(d.Addr())
			}
			return d.Run(cmd.Context())
		},
	}
	addRealtimeFlags(cmd)
	addListenFlag(cmd)
	return cmd
}

// addListenFlag adds --listen, the daemon's HTTP address (http.listen).
func addListenFlag(cmd *cobra.Command) {
	cmd.Flags().String("listen", config.Default().HTTP.Listen, "HTTP listen address, host:port (http.listen)")
	config.BindFlag(cmd.Flags(), "listen", "http.listen")
}
