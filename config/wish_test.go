package config

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateWISH(t *testing.T) {
	tokenFile := writeFile(t, "token", "from-file\n")
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // "" means valid
	}{
		{"proxy modes", func(c *Config) { c.WHIP.Mode, c.WHEP.Mode = "proxy", "proxy" }, ""},
		{"replace", func(c *Config) { c.WHIP.OnConflict = "replace" }, ""},
		{"token file", func(c *Config) { c.WHEP.TokenFile = tokenFile }, ""},
		{"whip stream", func(c *Config) {
			c.Streams = []Stream{{Name: "studio", Source: "whip", WHIPMode: "proxy", WHIPToken: "t", WHEPMode: "relay"}}
		}, ""},
		{"source stream with whep keys", func(c *Config) {
			c.Streams = []Stream{{Name: "cam", Source: "rtp://0.0.0.0:5004?codec=vp8", WHEPMode: "proxy", WHEPToken: "t"}}
		}, ""},

		{"whip mode", func(c *Config) { c.WHIP.Mode = "bridge" },
			`whip.mode: "bridge": must be relay or proxy`},
		{"whep mode empty", func(c *Config) { c.WHEP.Mode = "" },
			`whep.mode: "": must be relay or proxy`},
		{"on conflict", func(c *Config) { c.WHIP.OnConflict = "kick" },
			`whip.on_conflict: "kick": must be reject or replace`},
		{"token and file", func(c *Config) { c.WHIP.Token, c.WHIP.TokenFile = "x", tokenFile },
			`whip.token_file: "` + tokenFile + `": cannot be set together with whip.token (config): set one of them`},
		{"token file missing", func(c *Config) { c.WHEP.TokenFile = "/nonexistent/token" },
			`whep.token_file: "/nonexistent/token": cannot read the secret`},
		{"token with space", func(c *Config) { c.WHEP.Token = "two words" },
			`whep.token: must be printable ASCII without spaces (it is sent in an Authorization header)`},
		{"stream mode", func(c *Config) {
			c.Streams = []Stream{{Name: "studio", Source: "whip", WHEPMode: "direct"}}
		}, `streams[0].whep_mode: "direct": must be relay or proxy`},
		{"whip mode on a source stream", func(c *Config) {
			c.Streams = []Stream{{Name: "cam", Source: "rtp://0.0.0.0:5004?codec=vp8", WHIPMode: "proxy"}}
		}, `streams[0].whip_mode: "proxy": applies to WHIP streams only (source: whip)`},
		{"whip token on a source stream", func(c *Config) {
			c.Streams = []Stream{{Name: "cam", Source: "rtp://0.0.0.0:5004?codec=vp8", WHIPToken: "secret-value"}}
		}, `streams[0].whip_token: applies to WHIP streams only (source: whip)`},
		{"whip among sources", func(c *Config) {
			c.Streams = []Stream{{Name: "mix", Sources: []string{"whip", "file:///a.ogg"}}}
		}, `streams[0].sources[0]: "whip": a WHIP stream has source: whip and no other source`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("Validate = %v, want exactly one error", err)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Validate =\n  %s\nwant\n  %s", got, tt.want)
			}
			if strings.Contains(err.Error(), "secret-value") || strings.Contains(err.Error(), "two words") {
				t.Errorf("error %q shows a token", err)
			}
		})
	}
}

// TestWISHTokens resolves the WHIP and WHEP tokens from the environment:
// values and files, with their sources.
func TestWISHTokens(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "token", "play-from-file\r\n")
	t.Setenv("RTGATE_WHIP_TOKEN", "pub")
	t.Setenv("RTGATE_WHEP_TOKEN_FILE", file)
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cfg.ResolveWHIPToken()
	if err != nil || pub.Value != "pub" || pub.Source != "environment RTGATE_WHIP_TOKEN" {
		t.Errorf("ResolveWHIPToken = %q from %q, %v", pub.Value, pub.Source, err)
	}
	play, err := cfg.ResolveWHEPToken()
	if err != nil || play.Value != "play-from-file" || play.Source != "file "+file {
		t.Errorf("ResolveWHEPToken = %q from %q, %v", play.Value, play.Source, err)
	}
	if none, err := Default().ResolveWHIPToken(); err != nil || none.Value != "" {
		t.Errorf("default ResolveWHIPToken = %q, %v; want none", none.Value, err)
	}

	// A bad token from the environment is reported without its value.
	t.Setenv("RTGATE_WHIP_ALLOW_ANY_STREAM", "maybe")
	_, err = Load("", nil)
	if err == nil || !strings.Contains(err.Error(), `whip.allow_any_stream: "maybe": must be true or false`) {
		t.Errorf("Load(allow_any_stream=maybe) = %v", err)
	}
}
