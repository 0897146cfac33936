package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"unicode"
)

// SourceGenerated is the Source of a secret GenerateSecret made.
const SourceGenerated = "generated"

// Secret is a resolved app secret and where it came from. Its String,
// GoString and LogValue give the source, never the value, so a Secret that
// reaches a log line or an error message does not leak.
type Secret struct {
	// Value is the secret itself.
	Value string
	// Source is where it came from: "flag --app-secret", "environment
	// RTGATE_REALTIME_APP_SECRET", "file /etc/rtgate/secret", "config file",
	// "config" (a Config not made by Load) or "generated".
	Source string
}

// Generated reports whether GenerateSecret made the secret.
func (s Secret) Generated() bool { return s.Source == SourceGenerated }

// String returns the source: never the value.
func (s Secret) String() string {
	if s.Value == "" {
		return "none"
	}
	return s.Source
}

// GoString is String, so %#v does not print the value either.
func (s Secret) GoString() string { return "config.Secret{" + s.String() + "}" }

// LogValue logs the source: never the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// ResolveSecret returns the configured app secret: realtime.app_secret or
// the contents of realtime.app_secret_file (trailing whitespace trimmed),
// with where it came from. Setting both is an error, and so is a secret
// file that cannot be read or is empty; the errors are *FieldError. With
// neither set it returns the zero Secret and no error.
func (c *Config) ResolveSecret() (Secret, error) {
	return c.resolvePair("realtime.app_secret", "realtime.app_secret_file", c.Realtime.AppSecret, c.Realtime.AppSecretFile)
}

// ResolveWHIPToken returns the bearer token of WHIP publishers: whip.token
// or the contents of whip.token_file, as ResolveSecret does for the app
// secret. With neither set it returns the zero Secret.
func (c *Config) ResolveWHIPToken() (Secret, error) {
	return c.resolvePair("whip.token", "whip.token_file", c.WHIP.Token, c.WHIP.TokenFile)
}

// ResolveWHEPToken returns the bearer token of WHEP viewers: whep.token or
// the contents of whep.token_file.
func (c *Config) ResolveWHEPToken() (Secret, error) {
	return c.resolvePair("whep.token", "whep.token_file", c.WHEP.Token, c.WHEP.TokenFile)
}

// ResolveAPIToken returns the bearer token of the control API: api.token
// or the contents of api.token_file.
func (c *Config) ResolveAPIToken() (Secret, error) {
	return c.resolvePair("api.token", "api.token_file", c.API.Token, c.API.TokenFile)
}

// resolvePair reads a secret that is set either directly (key valueKey)
// or as the name of a file holding it (key fileKey).
func (c *Config) resolvePair(valueKey, fileKey, value, file string) (Secret, error) {
	switch {
	case value != "" && file != "":
		return Secret{}, &FieldError{Key: fileKey, Value: formatValue(file),
			Msg: fmt.Sprintf("cannot be set together with %s (%s): set one of them",
				valueKey, orConfig(c.Source(valueKey)))}
	case value != "":
		return Secret{Value: value, Source: orConfig(c.Source(valueKey))}, nil
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return Secret{}, &FieldError{Key: fileKey, Value: formatValue(file),
				Msg: fmt.Sprintf("cannot read the secret: %v", err)}
		}
		v := strings.TrimRightFunc(string(data), unicode.IsSpace)
		if v == "" {
			return Secret{}, &FieldError{Key: fileKey, Value: formatValue(file),
				Msg: "the file is empty"}
		}
		return Secret{Value: v, Source: "file " + file}, nil
	}
	return Secret{}, nil
}

// orConfig names the source of a value Load did not track.
func orConfig(src string) string {
	if src == "" || src == "default" {
		return "config"
	}
	return src
}

// EmbeddedSecret is the secret of an embedded SFU: the configured one, or a
// new one from GenerateSecret when none is configured.
func (c *Config) EmbeddedSecret() (Secret, error) {
	s, err := c.ResolveSecret()
	if err != nil || s.Value != "" {
		return s, err
	}
	return GenerateSecret()
}

// GenerateSecret makes a random secret: 32 bytes, hex-encoded.
func GenerateSecret() (Secret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Secret{}, fmt.Errorf("generate app secret: %w", err)
	}
	return Secret{Value: hex.EncodeToString(b), Source: SourceGenerated}, nil
}
