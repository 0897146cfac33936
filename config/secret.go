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
	r := c.Realtime
	switch {
	case r.AppSecret != "" && r.AppSecretFile != "":
		return Secret{}, &FieldError{Key: "realtime.app_secret_file", Value: formatValue(r.AppSecretFile),
			Msg: fmt.Sprintf("cannot be set together with realtime.app_secret (%s): set one of them",
				orConfig(c.Source("realtime.app_secret")))}
	case r.AppSecret != "":
		return Secret{Value: r.AppSecret, Source: orConfig(c.Source("realtime.app_secret"))}, nil
	case r.AppSecretFile != "":
		data, err := os.ReadFile(r.AppSecretFile)
		if err != nil {
			return Secret{}, &FieldError{Key: "realtime.app_secret_file", Value: formatValue(r.AppSecretFile),
				Msg: fmt.Sprintf("cannot read the secret: %v", err)}
		}
		value := strings.TrimRightFunc(string(data), unicode.IsSpace)
		if value == "" {
			return Secret{}, &FieldError{Key: "realtime.app_secret_file", Value: formatValue(r.AppSecretFile),
				Msg: "the file is empty"}
		}
		return Secret{Value: value, Source: "file " + r.AppSecretFile}, nil
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
