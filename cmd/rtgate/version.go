package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

const pionWebRTC = "github.com/pion/webrtc/v4"

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and pion/webrtc version",
		Long: `Print what this binary is: rtgate's version and commit (set at build time with
-ldflags "-X main.version=... -X main.commit=..."; "dev" otherwise, or the
module version and VCS revision Go recorded), the Go toolchain that built it
and the pion/webrtc version linked in.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(a.stdout, versionText())
			return err
		},
	}
}

// versionText is the output of `rtgate version`.
func versionText() string {
	v, c, goVersion, pion := version, commit, runtime.Version(), "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if c == "dev" {
			c = vcsRevision(bi)
		}
		for _, d := range bi.Deps {
			if d.Path != pionWebRTC {
				continue
			}
			pion = d.Version
			if d.Replace != nil {
				pion = fmt.Sprintf("%s (replaced by %s %s)", d.Version, d.Replace.Path, d.Replace.Version)
			}
		}
	}
	return fmt.Sprintf("rtgate %s\n  commit:      %s\n  go:          %s\n  pion/webrtc: %s\n", v, c, goVersion, pion)
}

// vcsRevision is the commit Go recorded at build time, or "dev".
func vcsRevision(bi *debug.BuildInfo) string {
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return "dev"
	case dirty:
		return rev + "-dirty"
	}
	return rev
}
