package config

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rtgate/rtgate/config/logswitch"
)

// TestLogComponentsInCode walks the module's Go files (tests aside) for
// loggers tagged with a component (With("component", "x"),
// slog.String("component", "x")) and checks that LogComponents lists
// exactly the names used: log.levels accepts no name the code does not
// log under, and rejects none it does.
func TestLogComponentsInCode(t *testing.T) {
	used := map[string][]string{} // component -> where
	var problems []string
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != ".." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" ||
				name == "bench-results" || name == "dist" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				for i, a := range n.Args {
					if !isStringLit(a, logswitch.ComponentKey) {
						continue
					}
					pos := fset.Position(a.Pos()).String()
					if i+1 >= len(n.Args) {
						problems = append(problems, pos+`: "component" is the last argument`)
						continue
					}
					name, ok := stringLit(n.Args[i+1])
					if !ok {
						problems = append(problems, pos+`: the value of "component" is not a string literal; write the name so that this test can check it`)
						continue
					}
					used[name] = append(used[name], pos)
				}
			case *ast.KeyValueExpr: // slog.Attr{Key: "component", ...}
				if id, ok := n.Key.(*ast.Ident); ok && id.Name == "Key" && isStringLit(n.Value, logswitch.ComponentKey) {
					problems = append(problems, fset.Position(n.Pos()).String()+`: write With("component", "name") so that this test can check the name`)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("walk the module: %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	// The walk must have found the code: pion's and the SFU's loggers at
	// least.
	if len(used["pion"]) == 0 || len(used["sfu"]) == 0 {
		t.Fatalf("found no component pion or sfu in the module's code: the walk is broken (found %v)", used)
	}
	for name, where := range used {
		if !slices.Contains(LogComponents(), name) {
			t.Errorf("component %q (%s) is not in config's logComponents: add it, so that log.levels accepts it", name, where[0])
		}
	}
	for _, name := range LogComponents() {
		if len(used[name]) == 0 {
			t.Errorf("config's logComponents lists %q, but no code logs under it: remove it", name)
		}
	}
	if !slices.IsSorted(logComponents) {
		t.Errorf("logComponents is not sorted: %q", logComponents)
	}
	t.Logf("components in use: %d", len(used))
}

func isStringLit(e ast.Expr, want string) bool {
	s, ok := stringLit(e)
	return ok && s == want
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// TestLogComponentsDocumented: the reference's row of log.levels names
// every component.
func TestLogComponentsDocumented(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := parseKeyTables(string(data))
	row, ok := rows["log.levels"]
	if !ok {
		t.Fatal("docs/CONFIG.md has no row for log.levels")
	}
	for _, name := range LogComponents() {
		if !strings.Contains(row.describe, "`"+name+"`") {
			t.Errorf("docs/CONFIG.md, line %d: the row of log.levels does not name component `%s`", row.line, name)
		}
	}
}

func TestLogLevelsFromEnv(t *testing.T) {
	tests := []struct {
		env  string
		want map[string]string
		err  string // the FieldError, when the text is wrong
	}{
		{"pion=warn,sfu=debug", map[string]string{"pion": "warn", "sfu": "debug"}, ""},
		{" SFU = Debug , ,pion=warn ", map[string]string{"sfu": "Debug", "pion": "warn"}, ""},
		{"sfu", nil, `log.levels: "sfu": must be component=level pairs separated by commas, such as "pion=warn,sfu=debug": "sfu" has no component=`},
		{"=debug", nil, `log.levels: "=debug": must be component=level pairs separated by commas`},
		{"sfu=debug,sfu=warn", nil, `log.levels: "sfu=debug,sfu=warn": must name each component once: sfu is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("RTGATE_LOG_LEVELS", tt.env)
			cfg, err := Load("", nil)
			if tt.err != "" {
				var errs Errors
				if !errors.As(err, &errs) || len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.err) {
					t.Fatalf("Load = %v, want one error starting %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(cfg.Log.Levels, tt.want) {
				t.Errorf("log.levels = %v, want %v", cfg.Log.Levels, tt.want)
			}
			if got := cfg.Source("log.levels"); got != "environment RTGATE_LOG_LEVELS" {
				t.Errorf("Source(log.levels) = %q", got)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestLogLevelsCheck: problems of log.levels from a file, as rtgate check
// prints them: the key path with the component, the value, the rule.
func TestLogLevelsCheck(t *testing.T) {
	known := "forward, http, pion, publish, pull, realtime, record, sfu, source, supervise, webrtc, wish"
	tests := []struct {
		name, file string
		want       []string
	}{
		{"bad level", "log:\n  levels:\n    sfu: loud\n    pion: warn\n",
			[]string{`log.levels.sfu: "loud": must be debug, info, warn or error`}},
		{"unknown component", "log:\n  levels: {mixer: debug, sfu: verbose}\n",
			[]string{
				`log.levels.mixer: unknown component: must be one of ` + known,
				`log.levels.sfu: "verbose": must be debug, info, warn or error`,
			}},
		{"a scalar", "log:\n  levels: debug\n",
			[]string{`log.levels: "debug": must be component=level pairs separated by commas, such as "pion=warn,sfu=debug": "debug" has no component=`}},
		{"a list", "log:\n  levels: [sfu, debug]\n",
			[]string{`log.levels: [sfu debug]: must be a map of component to level, such as {pion: warn, sfu: debug}`}},
		{"with other problems", "log:\n  level: loud\n  levels: {sfu: x}\n",
			[]string{`log.level: "loud": must be debug, info, warn or error`, `log.levels.sfu: "x": must be debug, info, warn or error`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			_, err := Check(writeFile(t, "c.yaml", tt.file), nil)
			if err == nil {
				t.Fatal("Check accepted the file")
			}
			if got := err.Error(); got != strings.Join(tt.want, "\n") {
				t.Errorf("Check =\n%s\nwant\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLogSwitchConfig(t *testing.T) {
	l := Log{Level: "warn", Format: "JSON", Levels: map[string]string{"sfu": "DEBUG", "pion": "error"}}
	got := l.SwitchConfig()
	want := logswitch.Config{Level: slog.LevelWarn, JSON: true,
		Levels: map[string]slog.Level{"sfu": slog.LevelDebug, "pion": slog.LevelError}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SwitchConfig = %+v, want %+v", got, want)
	}
	if c := Default().Log.SwitchConfig(); c.Level != slog.LevelInfo || c.JSON || len(c.Levels) != 0 {
		t.Errorf("default SwitchConfig = %+v", c)
	}
}

// TestDiffLogIsInPlace: every log.* key is applied by a reload, not
// refused.
func TestDiffLogIsInPlace(t *testing.T) {
	old, cur := Default(), Default()
	cur.Log = Log{Level: "debug", Format: "json", Levels: map[string]string{"sfu": "debug"}}
	d := DiffConfigs(old, cur)
	if len(d.Restart) != 0 || len(d.Pipelines) != 0 ||
		!reflect.DeepEqual(d.Other, []string{"log.level", "log.format", "log.levels"}) {
		t.Errorf("DiffConfigs = %+v, want log.level, log.format and log.levels in Other", d)
	}
}
