package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway"
)

const sfuLong = `Serve only the embedded SFU: the Cloudflare Realtime SFU HTTP API
(/v1/apps/{appId}/sessions/..., also without /v1) over pion, offline, for apps
and CI that would otherwise need a Cloudflare account. Point a Realtime API
client at the printed base URL with the printed app id and its secret.

Once listening it prints to stdout:

  rtgate sfu: serving the Realtime API
    base URL:   http://127.0.0.1:8081/v1/apps/rtgate
    app id:     rtgate
    app secret: from flag --app-secret

The secret itself is printed only when rtgate generated it (no --app-secret,
--app-secret-file or realtime.app_secret[_file] given), once.

The SFU's media use one UDP port (sfu.udp_port, sfu.listen_ip, with
sfu.public_ips behind 1:1 NAT). Its waits and limits are sfu.* in the config
file. It exits 0 on SIGINT or SIGTERM, after ending its sessions.`

func newSFUCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sfu [--listen ADDR] [--app-id ID] [--app-secret SECRET | --app-secret-file FILE] [-c FILE]",
		Short: "Serve only the embedded SFU (the Realtime API, offline)",
		Long:  sfuLong,
		Example: `  rtgate sfu --listen 127.0.0.1:0 --app-id test --app-secret-file ./secret
  rtgate sfu --listen 0.0.0.0:8081 -c /etc/rtgate/rtgate.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			s, err := gateway.NewSFUServer(cfg, newLogger(cmd, cfg, a.stderr))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "rtgate sfu: serving the Realtime API\n"+
				"  base URL:   %s\n"+
				"  app id:     %s\n"+
				"  app secret: %s\n", s.BaseURL(), s.AppID(), secretLine(s.Secret()))
			if a.listening != nil {
				a.listening(s.Addr())
			}
			return s.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	addConfigFlag(fs)
	fs.String("listen", config.Default().SFU.Listen, "HTTP listen address, host:port; port 0 picks a free one (sfu.listen)")
	config.BindFlag(fs, "listen", "sfu.listen")
	addAppFlags(fs)
	return cmd
}

// secretLine says where the SFU's secret came from; it shows the secret
// only when rtgate generated it, as nobody else knows it then.
func secretLine(s config.Secret) string {
	if s.Generated() {
		return "generated: " + s.Value + " (shown once; pass --app-secret to choose one)"
	}
	return "from " + s.Source
}
