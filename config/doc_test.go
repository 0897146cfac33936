package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// configDoc is the configuration reference that TestConfigDoc keeps true.
const configDoc = "../docs/CONFIG.md"

// Headings of the sections of configDoc checked beyond the key tables.
const (
	docSecrets = "## Secrets from files"
	docLists   = "## Lists in environment variables"
	docReload  = "## What a reload changes"
	// docRestart starts the item of docReload that lists the key paths a
	// reload cannot apply.
	docRestart = "- **Restart needed.**"
)

// docHeader is the header row of every key table of configDoc.
var docHeader = []string{"key", "environment variable", "default", "what it does"}

// docKey is one key configDoc must document.
type docKey struct {
	key string // "http.listen"; "streams[].name" for a key of every item of a list
	// env is the key's environment variable; a list item's key is set in
	// the JSON of its list's variable.
	env string
	// def is Default()'s value; for a list item's key, the zero value: what
	// an item that leaves the key out gets.
	def reflect.Value
	// list marks a list of sections: set from the environment as JSON.
	list bool
}

// documentedKeys returns every key of Keys(), then after each list of
// sections the keys of its items, all in schema order.
func documentedKeys() []docKey {
	def := reflect.ValueOf(Default()).Elem()
	var out []docKey
	for _, l := range leaves {
		k := docKey{key: l.key, env: EnvName(l.key), def: def.FieldByIndex(l.index), list: isSectionList(l.typ)}
		out = append(out, k)
		if k.list {
			out = append(out, itemKeys(l.key+"[]", k.env, l.typ.Elem())...)
		}
	}
	return out
}

func isSectionList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// itemKeys returns the keys of the item type t of a list, prefixed.
func itemKeys(prefix, env string, t reflect.Type) []docKey {
	var out []docKey
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key := prefix + "." + f.Tag.Get("mapstructure")
		if f.Type.Kind() == reflect.Struct {
			out = append(out, itemKeys(key, env, f.Type)...)
			continue
		}
		out = append(out, docKey{key: key, env: env, def: reflect.Zero(f.Type)})
		if isSectionList(f.Type) {
			out = append(out, itemKeys(key+"[]", env, f.Type.Elem())...)
		}
	}
	return out
}

// TestConfigDoc checks docs/CONFIG.md against the schema: a row for every
// key of Keys() and of the list items' types, with the key's environment
// variable and its default; no row for a key that does not exist; every
// secret with a _file variant in its section, every list of sections in
// the section on JSON lists, and the reload section's restart list equal
// to what DiffConfigs refuses.
func TestConfigDoc(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	keys := documentedKeys()
	for _, p := range checkDoc(string(data), keys, restartPrefixes) {
		t.Errorf("docs/CONFIG.md: %s", p)
	}
	t.Logf("%s documents %d keys", configDoc, len(keys))
}

// TestConfigDocFindsMistakes shows that checkDoc fails, naming the key,
// for each kind of mistake: on the real reference with one row removed,
// and on a small reference written here.
func TestConfigDocFindsMistakes(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	lines := strings.Split(string(data), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "| `sfu.connect_wait` |") })
	if i < 0 {
		t.Fatal("the reference has no row for sfu.connect_wait to remove")
	}
	doc := strings.Join(slices.Delete(slices.Clone(lines), i, i+1), "\n")
	got := checkDoc(doc, documentedKeys(), restartPrefixes)
	want := "sfu.connect_wait (RTGATE_SFU_CONNECT_WAIT) is not documented: add the row " +
		"| `sfu.connect_wait` | `RTGATE_SFU_CONNECT_WAIT` | `5s` | ... |"
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("without the row of sfu.connect_wait: problems\n%s\nwant one starting %q", strings.Join(got, "\n"), want)
	}

	small := `# test
## Secrets from files
` + "`s.token` or `s.token_file`" + `
## Lists in environment variables
` + "`RTGATE_ITEMS`" + `
## Keys
| key | environment variable | default | what it does |
|---|---|---|---|
| ` + "`s.wait` | `RTGATE_S_WAIT` | `30s` | How long it waits. |" + `
| ` + "`s.token` | `RTGATE_S_TOKEN` | `\"\"` | The token of s. |" + `
| ` + "`s.token_file` | `RTGATE_S_TOKEN_FILE` | `\"\"` | A file holding the token. |" + `
| ` + "`s.tags` | `RTGATE_S_TAGS` | `[a, \"b c\"]` | Tags to apply. |" + `
| ` + "`items` | `RTGATE_ITEMS` | `[]` | The items. |" + `
| ` + "`items[].name` | `RTGATE_ITEMS` | `\"\"` | The item's name. |" + `
## What a reload changes
- **Restart needed.** ` + "`s.*`" + ` needs a restart.
- **Pipelines** (` + "`items`" + `) are matched by name.
- **Applied in place.** the rest.
`
	type item struct {
		Name string `mapstructure:"name"`
	}
	keys := []docKey{
		{key: "s.wait", env: "RTGATE_S_WAIT", def: reflect.ValueOf(30 * time.Second)},
		{key: "s.token", env: "RTGATE_S_TOKEN", def: reflect.ValueOf("")},
		{key: "s.token_file", env: "RTGATE_S_TOKEN_FILE", def: reflect.ValueOf("")},
		{key: "s.tags", env: "RTGATE_S_TAGS", def: reflect.ValueOf([]string{"a", "b c"})},
		{key: "items", env: "RTGATE_ITEMS", def: reflect.ValueOf([]item{}), list: true},
		{key: "items[].name", env: "RTGATE_ITEMS", def: reflect.ValueOf("")},
	}
	if p := checkDoc(small, keys, []string{"s."}); len(p) != 0 {
		t.Fatalf("the small reference is correct, but checkDoc reports:\n%s", strings.Join(p, "\n"))
	}
	// "30s" may also be written "0.5m"; the value counts, not its text.
	if p := checkDoc(strings.Replace(small, "`30s`", "`0.5m`", 1), keys, []string{"s."}); len(p) != 0 {
		t.Errorf("default written as 0.5m for 30s: %s", strings.Join(p, "\n"))
	}

	for _, c := range []struct {
		name    string
		doc     string
		keys    []docKey
		restart []string
		want    []string // each a substring of one problem, in order
	}{
		{name: "wrong default",
			doc:  strings.Replace(small, "`30s`", "`20s`", 1),
			want: []string{"s.wait (line 9): default `20s` in the reference, want `30s` as Default() has it"}},
		{name: "default without a unit",
			doc:  strings.Replace(small, "`30s`", "`30`", 1),
			want: []string{"s.wait (line 9): default `30`: cannot be read as the key's value"}},
		{name: "wrong list default",
			doc:  strings.Replace(small, "`[a, \"b c\"]`", "`[a]`", 1),
			want: []string{"s.tags (line 12): default `[a]` in the reference, want `[a, \"b c\"]`"}},
		{name: "wrong environment variable",
			doc:  strings.Replace(small, "`RTGATE_S_WAIT`", "`RTGATE_WAIT`", 1),
			want: []string{"s.wait (line 9): environment variable `RTGATE_WAIT` in the reference, want `RTGATE_S_WAIT`"}},
		{name: "no description",
			doc:  strings.Replace(small, "How long it waits.", "", 1),
			want: []string{"s.wait (line 9): says nothing about what the key does"}},
		{name: "a key config does not have",
			doc:  strings.Replace(small, "| `s.wait`", "| `s.gone` | `RTGATE_S_GONE` | `1s` | Gone now. |\n| `s.wait`", 1),
			want: []string{"s.gone (line 9): documented, but config has no such key"}},
		{name: "a key documented twice",
			doc:  strings.Replace(small, "| `s.token` |", "| `s.wait` | `RTGATE_S_WAIT` | `30s` | Again. |\n| `s.token` |", 1),
			want: []string{"s.wait (line 10): documented twice (also line 9)"}},
		{name: "a new key",
			doc: small,
			keys: append(slices.Clone(keys), docKey{key: "api.token", env: "RTGATE_API_TOKEN", def: reflect.ValueOf("")},
				docKey{key: "api.token_file", env: "RTGATE_API_TOKEN_FILE", def: reflect.ValueOf("")}),
			want: []string{
				"api.token (RTGATE_API_TOKEN) is not documented: add the row | `api.token` | `RTGATE_API_TOKEN` | `\"\"` | ... |",
				"api.token_file (RTGATE_API_TOKEN_FILE) is not documented",
				"api.token and api.token_file: a secret that can come from a file, not named in \"## Secrets from files\"",
				"api.token: \"## What a reload changes\" does not say what a reload does with `api.*`",
			}},
		{name: "a new list",
			doc:  small,
			keys: append(slices.Clone(keys), docKey{key: "more", env: "RTGATE_MORE", def: reflect.ValueOf([]item{}), list: true}),
			want: []string{
				"more (RTGATE_MORE) is not documented",
				"more: a list of sections, but \"## Lists in environment variables\" does not name `RTGATE_MORE`",
				"more: \"## What a reload changes\" does not say what a reload does with `more`",
			}},
		{name: "restart list out of date",
			doc:     small,
			restart: []string{"s.", "items."},
			want:    []string{"\"- **Restart needed.**\" names [s.*], want [items.* s.*] (restartPrefixes of diff.go)"}},
		{name: "a table with other columns",
			doc:  strings.Replace(small, "| key | environment variable | default | what it does |", "| key | env | default | what it does |", 1),
			want: []string{"line 7: a key table's header is [key env default what it does], want [key environment variable default what it does]"}},
		{name: "a missing section",
			doc: strings.Replace(small, "## Lists in environment variables", "## Lists", 1),
			want: []string{"the reference has no section \"## Lists in environment variables\"",
				"items: a list of sections, but \"## Lists in environment variables\" does not name `RTGATE_ITEMS`"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.keys == nil {
				c.keys = keys
			}
			if c.restart == nil {
				c.restart = []string{"s."}
			}
			got := checkDoc(c.doc, c.keys, c.restart)
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(c.want), strings.Join(c.want, "\n"))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// docRow is one row of a key table.
type docRow struct {
	line               int
	env, def, describe string
}

// checkDoc returns every problem of the reference doc: the keys it should
// document (keys) and does not, or documents wrongly, and those it
// documents that do not exist; the secrets with a _file variant, the lists
// of sections and the reload rules (restart: the restartPrefixes) that its
// sections do not name.
func checkDoc(doc string, keys []docKey, restart []string) []string {
	rows, problems := parseKeyTables(doc)
	known := make(map[string]bool, len(keys))
	for _, k := range keys {
		known[k.key] = true
		r, ok := rows[k.key]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s (%s) is not documented: add the row | `%s` | `%s` | `%s` | ... | to the table of its section",
				k.key, k.env, k.key, k.env, docText(k.def)))
			continue
		}
		if env := codeSpan(r.env); env != k.env {
			problems = append(problems, fmt.Sprintf("%s (line %d): environment variable `%s` in the reference, want `%s`", k.key, r.line, env, k.env))
		}
		if err := sameDefault(r.def, k.def); err != nil {
			problems = append(problems, fmt.Sprintf("%s (line %d): %v", k.key, r.line, err))
		}
		if len(strings.Fields(r.describe)) < 2 {
			problems = append(problems, fmt.Sprintf("%s (line %d): says nothing about what the key does", k.key, r.line))
		}
	}
	var stale []string
	for key := range rows {
		if !known[key] {
			stale = append(stale, key)
		}
	}
	sort.Slice(stale, func(i, j int) bool { return rows[stale[i]].line < rows[stale[j]].line })
	for _, key := range stale {
		problems = append(problems, fmt.Sprintf("%s (line %d): documented, but config has no such key: remove the row", key, rows[key].line))
	}

	sections := docSections(doc)
	for _, h := range []string{docSecrets, docLists, docReload} {
		if _, ok := sections[h]; !ok {
			problems = append(problems, fmt.Sprintf("the reference has no section %q", h))
		}
	}
	for _, k := range keys {
		base, isFile := strings.CutSuffix(k.key, "_file")
		if isFile && known[base] && !strings.Contains(base, "[]") &&
			!(strings.Contains(sections[docSecrets], "`"+base+"`") && strings.Contains(sections[docSecrets], "`"+k.key+"`")) {
			problems = append(problems, fmt.Sprintf("%s and %s: a secret that can come from a file, not named in %q", base, k.key, docSecrets))
		}
		if k.list && !strings.Contains(k.key, "[]") && !strings.Contains(sections[docLists], "`"+k.env+"`") {
			problems = append(problems, fmt.Sprintf("%s: a list of sections, but %q does not name `%s`", k.key, docLists, k.env))
		}
	}
	problems = append(problems, checkReload(sections[docReload], keys, restart)...)
	return problems
}

// checkReload checks the reload section: its restart item names exactly
// the restart prefixes, and every top-level section of the schema is named
// somewhere in it (`api.*` for a section, `shutdown_timeout` or `streams`
// for a top-level key), so a new section needs a word on reloads.
func checkReload(text string, keys []docKey, restart []string) []string {
	var problems []string
	if text == "" {
		return nil // reported as a missing section
	}
	item, ok := docItem(text, docRestart)
	if !ok {
		return []string{fmt.Sprintf("%q has no item starting %q", docReload, docRestart)}
	}
	var named, want []string
	for _, m := range regexp.MustCompile("`([a-z0-9_]+)\\.\\*`").FindAllStringSubmatch(item, -1) {
		named = append(named, m[1]+".*")
	}
	for _, p := range restart {
		want = append(want, p+"*")
	}
	slices.Sort(named)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(named), want) {
		problems = append(problems, fmt.Sprintf("%q names %v, want %v (restartPrefixes of diff.go)", docRestart, named, want))
	}
	seen := map[string]bool{}
	for _, k := range keys {
		top, _, nested := strings.Cut(k.key, ".")
		if strings.Contains(top, "[") {
			continue // a list item's key: its list is checked
		}
		name := "`" + top + "`"
		if nested {
			name = "`" + top + ".*`"
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		if !strings.Contains(text, name) {
			problems = append(problems, fmt.Sprintf("%s: %q does not say what a reload does with %s", k.key, docReload, name))
		}
	}
	return problems
}

// parseKeyTables reads every key table of doc (a table whose header
// starts with "key"): a row per key, with the problems of rows and headers
// it cannot read.
func parseKeyTables(doc string) (map[string]docRow, []string) {
	rows := map[string]docRow{}
	var problems []string
	inTable, keyTable := false, false
	for i, line := range strings.Split(doc, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := tableCells(line)
		switch {
		case !inTable: // the header
			inTable = true
			keyTable = len(cells) > 0 && cells[0] == "key"
			if keyTable && !slices.Equal(cells, docHeader) {
				// Its rows are still read in this order.
				problems = append(problems, fmt.Sprintf("line %d: a key table's header is %v, want %v", n, cells, docHeader))
			}
			continue
		case !keyTable || strings.Trim(line, "|-: ") == "": // another table, or the delimiter row
			continue
		}
		key := codeSpan(cells[0])
		if len(cells) != len(docHeader) || cells[0] != "`"+key+"`" {
			problems = append(problems, fmt.Sprintf("line %d: a row of a key table needs %d cells, the first a key path in backticks: %s", n, len(docHeader), line))
			continue
		}
		if r, dup := rows[key]; dup {
			problems = append(problems, fmt.Sprintf("%s (line %d): documented twice (also line %d)", key, n, r.line))
			continue
		}
		rows[key] = docRow{line: n, env: cells[1], def: cells[2], describe: cells[3]}
	}
	return rows, problems
}

// tableCells splits a Markdown table row at the pipes that are not
// escaped, and trims the cells.
func tableCells(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// codeSpan returns the text of the first `code span` of a cell, or "".
func codeSpan(cell string) string {
	_, rest, ok := strings.Cut(cell, "`")
	if !ok {
		return ""
	}
	span, _, ok := strings.Cut(rest, "`")
	if !ok {
		return ""
	}
	return span
}

// docSections splits doc at its "## " headings: heading line -> text up
// to the next one.
func docSections(doc string) map[string]string {
	out := map[string]string{}
	heading := ""
	var text strings.Builder
	flush := func() {
		if heading != "" {
			out[heading] = text.String()
		}
		text.Reset()
	}
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "## ") {
			flush()
			heading = strings.TrimSpace(line)
			continue
		}
		text.WriteString(line + "\n")
	}
	flush()
	return out
}

// docItem returns the list item of text that starts with prefix, up to
// the next item or the end of the list.
func docItem(text, prefix string) (string, bool) {
	_, rest, ok := strings.Cut(text, "\n"+prefix)
	if !ok && strings.HasPrefix(text, prefix) {
		rest, ok = strings.TrimPrefix(text, prefix), true
	}
	if !ok {
		return "", false
	}
	var item strings.Builder
	for _, line := range strings.Split(rest, "\n") {
		if strings.HasPrefix(line, "- ") || strings.TrimSpace(line) == "" {
			break
		}
		item.WriteString(line + "\n")
	}
	return item.String(), true
}

// sameDefault reads the default cell of a row as a YAML value decoded to
// the key's type (as Load reads the file) and compares it with def.
func sameDefault(cell string, def reflect.Value) error {
	text := codeSpan(cell)
	if text == "" {
		return fmt.Errorf("no default in backticks in %q: want `%s`", cell, docText(def))
	}
	var raw any
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		return fmt.Errorf("default `%s` is not a YAML value (%v): want `%s`", text, err, docText(def))
	}
	got := reflect.New(def.Type())
	if err := decodeValue(raw, got.Interface(), true); err != nil {
		return fmt.Errorf("default `%s`: cannot be read as the key's value (%v): want `%s`", text, err, docText(def))
	}
	if g, w := docText(got.Elem()), docText(def); g != w {
		return fmt.Errorf("default `%s` in the reference, want `%s` as Default() has it", text, w)
	}
	return nil
}

// docText writes a value the way the reference does, as in a YAML file:
// durations as Go prints them ("30s", "1h0m0s"), strings plain unless
// YAML would read them as something else, lists and maps in flow style.
// Nil and empty lists both read "[]".
func docText(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		var back any
		if err := yaml.Unmarshal([]byte(s), &back); err != nil || back != s || strings.ContainsAny(s, " ,[]{}") {
			return strconv.Quote(s)
		}
		return s
	case reflect.Slice, reflect.Array:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = docText(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case reflect.Map:
		items := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			items = append(items, docText(k)+": "+docText(v.MapIndex(k)))
		}
		slices.Sort(items)
		return "{" + strings.Join(items, ", ") + "}"
	case reflect.Struct:
		var items []string
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				items = append(items, f.Tag.Get("mapstructure")+": "+docText(v.Field(i)))
			}
		}
		return "{" + strings.Join(items, ", ") + "}"
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "null"
		}
		return docText(v.Elem())
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	}
	return fmt.Sprint(v.Interface())
}
