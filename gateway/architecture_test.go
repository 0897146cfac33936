package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestArchitecture keeps the layering easy to see: bridge never imports
// gateway; the embedded SFU imports of gateway only its leaves peer and
// rtapi (so `rtgate sfu` stands alone); the leaves import nothing of
// gateway; config is imported by cmd and gateway only; gateway/web (the
// pages) imports nothing of rtgate; gateway/wish (WHIP/WHEP) sees the
// daemon only through its Registry; gateway/bench (the harness) is
// imported by cmd only.
func TestArchitecture(t *testing.T) {
	const mod = "github.com/rtgate/rtgate/"
	out, err := exec.Command("go", "list", "-deps", "-test=false",
		"-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], mod) {
			imports[strings.TrimPrefix(f[0], mod)] = f[1:]
		}
	}
	if len(imports) < 5 {
		t.Fatalf("go list found only %d packages of the module", len(imports))
	}
	for pkg, deps := range imports {
		for _, d := range deps {
			dep, ok := strings.CutPrefix(d, mod)
			if !ok {
				continue
			}
			var bad string
			switch {
			case strings.HasPrefix(pkg, "bridge") && strings.HasPrefix(dep, "gateway"):
				bad = "bridge never imports gateway"
			case strings.HasPrefix(pkg, "gateway/sfu") && strings.HasPrefix(dep, "gateway") &&
				dep != "gateway/peer" && dep != "gateway/rtapi" && !strings.HasPrefix(dep, "gateway/sfu"):
				bad = "the embedded SFU imports only gateway/peer and gateway/rtapi of gateway"
			case (pkg == "gateway/peer" || pkg == "gateway/rtapi") && strings.HasPrefix(dep, "gateway"):
				bad = "gateway/peer and gateway/rtapi are leaves"
			case dep == "config" && !strings.HasPrefix(pkg, "cmd") && !strings.HasPrefix(pkg, "gateway"):
				bad = "config is imported by cmd and gateway only"
			case strings.HasPrefix(dep, "gateway/sfu") && strings.HasPrefix(pkg, "gateway/realtime"):
				bad = "the client does not depend on the SFU"
			case (pkg == "gateway/supervise" || pkg == "gateway/notify") && (strings.HasPrefix(dep, "gateway") || dep == "config"):
				bad = "gateway/supervise and gateway/notify are leaves"
			case pkg == "gateway/metrics" && (dep == "gateway" || dep == "config" || strings.HasPrefix(dep, "gateway/sfu")):
				bad = "gateway/metrics reads pipelines' snapshots; it does not depend on the daemon, config or the SFU"
			case pkg == "gateway/wish" && (dep == "gateway" || dep == "config" || strings.HasPrefix(dep, "gateway/sfu")):
				bad = "gateway/wish reaches the SFU through gateway/realtime and the daemon through its Registry; it imports neither the daemon, config nor the embedded SFU"
			case pkg == "config/logswitch":
				bad = "config/logswitch is a slog handler and imports nothing of rtgate"
			case pkg == "gateway/web":
				bad = "gateway/web serves files and imports nothing of rtgate"
			case dep == "gateway/bench" && !strings.HasPrefix(pkg, "cmd"):
				bad = "the bench harness is wired by cmd only; nothing of the product depends on it"
			case pkg == "gateway/pull" && (strings.HasPrefix(dep, "gateway") || dep == "config") &&
				dep != "gateway/peer" && dep != "gateway/realtime" && dep != "gateway/rtapi":
				bad = "gateway/pull imports only gateway/peer, gateway/realtime and gateway/rtapi of gateway (streams reach it through pull.Resolver)"
			}
			if bad != "" {
				t.Errorf("%s imports %s: %s", pkg, dep, bad)
			}
		}
	}
}
