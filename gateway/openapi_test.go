package gateway

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/supervise"
	"github.com/rtgate/rtgate/gateway/wish"
)

// openAPIFile is rtgate's own HTTP API, hand-written; these tests keep it
// true to the code.
const openAPIFile = "../docs/openapi.yaml"

// sfuPrefixes are the mux patterns of the embedded SFU's Realtime API:
// Cloudflare's API, documented by Cloudflare's OpenAPI file, so left out
// of ours on purpose.
var sfuPrefixes = []string{"/v1/apps/", "/apps/"}

// How the route patterns are found. http.ServeMux cannot list what was
// registered on it, and the registering functions take a *http.ServeMux
// (web.Register, wish.Handler.Register), so the mux cannot be wrapped
// without changing them. Instead the test reads the source: from
// Daemon.routes it follows the mux into every function it is passed to,
// evaluates the pattern of each mux.Handle/HandleFunc (string literals,
// constants, "+", range loops over literal lists and struct fields), and
// fails on anything it does not understand: a pattern it cannot evaluate,
// the mux passed to a function not in routeRegistrars, or any other use of
// the mux variable (an alias, storing it). It cannot miss a registration
// silently. (Branches and closures are read as if taken: a pattern found
// there must still be on the real mux, below.) Then every pattern found is confirmed on the mux of a real
// Daemon (ServeMux.Handler must return that very pattern), and every
// operation of the document is resolved on that mux too.

// routeRegistrar is a function that registers routes on the mux it is
// given: its package directory (relative to gateway/), receiver type
// ("" for a function) and name.
type routeRegistrar struct{ dir, recv, name string }

// routeRegistrars are the calls, as written in the source, that the mux is
// passed to. A new one fails the test until it is added here.
var routeRegistrars = map[string]routeRegistrar{
	"d.controlRoutes": {".", "Daemon", "controlRoutes"},
	"web.Register":    {"web", "", "Register"},
	"d.wish.Register": {"wish", "Handler", "Register"},
	"mountSFU":        {".", "", "mountSFU"},
}

// srcPackage is one parsed package directory.
type srcPackage struct {
	fset   *token.FileSet
	funcs  map[string]*ast.FuncDecl // "Recv.name" or "name"
	values map[string]ast.Expr      // package-level const and var values
}

type routeFinder struct {
	base       string // the gateway package's directory
	registrars map[string]routeRegistrar
	fset       *token.FileSet
	pkgs       map[string]*srcPackage
	patterns   map[string]string // pattern -> where it is registered
}

// finderError is how routeFinder stops at the first thing it cannot
// follow; findRoutes recovers it.
type finderError struct{ msg string }

func (f *routeFinder) fail(format string, args ...any) {
	panic(finderError{fmt.Sprintf(format, args...)})
}

func (f *routeFinder) pkg(dir string) *srcPackage {
	if p, ok := f.pkgs[dir]; ok {
		return p
	}
	files, err := filepath.Glob(filepath.Join(f.base, dir, "*.go"))
	if err != nil || len(files) == 0 {
		f.fail("no Go files in %s: %v", dir, err)
	}
	p := &srcPackage{fset: f.fset, funcs: map[string]*ast.FuncDecl{}, values: map[string]ast.Expr{}}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(f.fset, file, nil, 0)
		if err != nil {
			f.fail("parse %s: %v", file, err)
		}
		for _, decl := range af.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				key := d.Name.Name
				if d.Recv != nil && len(d.Recv.List) == 1 {
					rt := d.Recv.List[0].Type
					if s, ok := rt.(*ast.StarExpr); ok {
						rt = s.X
					}
					if id, ok := rt.(*ast.Ident); ok {
						key = id.Name + "." + key
					}
				}
				p.funcs[key] = d
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					vs, ok := spec.(*ast.ValueSpec)
					if !ok || len(vs.Values) != len(vs.Names) {
						continue
					}
					for i, n := range vs.Names {
						p.values[n.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	f.pkgs[dir] = p
	return p
}

func (f *routeFinder) pos(n ast.Node) string {
	p := f.fset.Position(n.Pos())
	return filepath.Base(p.Filename) + ":" + strconv.Itoa(p.Line)
}

// value is what the evaluator knows of an expression: a string, a list
// (from a composite literal) or a struct literal whose fields are
// evaluated when read.
type value any

type structValue struct {
	fields map[string]ast.Expr
	env    map[string]value
	pkg    *srcPackage
}

func (f *routeFinder) eval(e ast.Expr, env map[string]value, p *srcPackage) (value, error) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			return strconv.Unquote(x.Value)
		}
	case *ast.ParenExpr:
		return f.eval(x.X, env, p)
	case *ast.BinaryExpr:
		if x.Op == token.ADD {
			a, err := f.eval(x.X, env, p)
			if err != nil {
				return nil, err
			}
			b, err := f.eval(x.Y, env, p)
			if err != nil {
				return nil, err
			}
			as, ok1 := a.(string)
			bs, ok2 := b.(string)
			if ok1 && ok2 {
				return as + bs, nil
			}
		}
	case *ast.Ident:
		if v, ok := env[x.Name]; ok {
			return v, nil
		}
		if v, ok := p.values[x.Name]; ok {
			return f.eval(v, nil, p)
		}
	case *ast.SelectorExpr:
		v, err := f.eval(x.X, env, p)
		if err != nil {
			return nil, err
		}
		if sv, ok := v.(structValue); ok {
			if fe, ok := sv.fields[x.Sel.Name]; ok {
				return f.eval(fe, sv.env, sv.pkg)
			}
		}
	case *ast.CompositeLit:
		at, ok := x.Type.(*ast.ArrayType)
		if !ok {
			break
		}
		var names []string // the element struct's fields, in order
		if st, ok := at.Elt.(*ast.StructType); ok {
			for _, fl := range st.Fields.List {
				for _, n := range fl.Names {
					names = append(names, n.Name)
				}
			}
		}
		var out []value
		for _, el := range x.Elts {
			cl, ok := el.(*ast.CompositeLit)
			if !ok || names == nil {
				v, err := f.eval(el, env, p)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
				continue
			}
			sv := structValue{fields: map[string]ast.Expr{}, env: env, pkg: p}
			for i, fe := range cl.Elts {
				if kv, ok := fe.(*ast.KeyValueExpr); ok {
					sv.fields[kv.Key.(*ast.Ident).Name] = kv.Value
				} else if i < len(names) {
					sv.fields[names[i]] = fe
				}
			}
			out = append(out, sv)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: cannot evaluate %s", f.pos(e), types.ExprString(e))
}

// walk finds the routes a registering function adds to its mux.
func (f *routeFinder) walk(r routeRegistrar) {
	p := f.pkg(r.dir)
	key := r.name
	if r.recv != "" {
		key = r.recv + "." + r.name
	}
	fn, ok := p.funcs[key]
	if !ok || fn.Body == nil {
		f.fail("%s: no func %s", r.dir, key)
	}
	// The mux is the parameter of type *http.ServeMux or, in routes, the
	// variable assigned http.NewServeMux().
	// It is told by its name: every identifier of that name in the
	// function must be a use this test understands.
	mux := ""
	for _, fl := range fn.Type.Params.List {
		if types.ExprString(fl.Type) == "*http.ServeMux" && len(fl.Names) == 1 {
			mux = fl.Names[0].Name
		}
	}
	accounted := map[*ast.Ident]bool{}
	if mux == "" {
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == 1 && len(as.Rhs) == 1 {
				if c, ok := as.Rhs[0].(*ast.CallExpr); ok && types.ExprString(c.Fun) == "http.NewServeMux" {
					id := as.Lhs[0].(*ast.Ident)
					mux, accounted[id] = id.Name, true
				}
			}
			return true
		})
	}
	if mux == "" {
		f.fail("%s: %s has no *http.ServeMux", f.pos(fn), key)
	}
	isMux := func(e ast.Expr) (*ast.Ident, bool) {
		id, ok := e.(*ast.Ident)
		return id, ok && id.Name == mux
	}
	var visit func(n ast.Node, env map[string]value)
	visit = func(n ast.Node, env map[string]value) {
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.RangeStmt:
				list, err := f.eval(x.X, env, p)
				elems, ok := list.([]value)
				if err != nil || !ok {
					visit(x.Body, env) // a pattern using its variables fails to evaluate
					return false
				}
				for _, el := range elems {
					inner := map[string]value{}
					for k, v := range env {
						inner[k] = v
					}
					if id, ok := x.Value.(*ast.Ident); ok {
						inner[id.Name] = el
					}
					visit(x.Body, inner)
				}
				return false
			case *ast.ReturnStmt:
				if len(x.Results) == 1 {
					if id, ok := isMux(x.Results[0]); ok {
						accounted[id] = true
					}
				}
			case *ast.CallExpr:
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
					if id, ok := isMux(sel.X); ok && (sel.Sel.Name == "Handle" || sel.Sel.Name == "HandleFunc") {
						accounted[id] = true
						v, err := f.eval(x.Args[0], env, p)
						pat, ok := v.(string)
						if err != nil || !ok {
							f.fail("%s: the pattern of %s: %v", f.pos(x), types.ExprString(x.Fun), err)
						}
						if prev, dup := f.patterns[pat]; dup {
							f.fail("%s: pattern %q registered twice (also %s)", f.pos(x), pat, prev)
						}
						f.patterns[pat] = f.pos(x)
						return true
					}
				}
				for _, a := range x.Args {
					id, ok := isMux(a)
					if !ok {
						continue
					}
					callee := types.ExprString(x.Fun)
					next, known := f.registrars[callee]
					if !known {
						f.fail("%s: the mux is passed to %s, which this test does not follow: add it to routeRegistrars", f.pos(x), callee)
					}
					accounted[id] = true
					f.walk(next)
				}
			}
			return true
		})
	}
	visit(fn.Body, map[string]value{})
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok && id.Name == mux && !accounted[id] {
			f.fail("%s: a use of the mux this test does not understand (%s in %s)", f.pos(id), id.Name, key)
		}
		return true
	})
}

// findRoutes returns every pattern that Daemon.routes in the package at
// base registers, with where; or why it cannot tell.
func findRoutes(base string, registrars map[string]routeRegistrar) (patterns map[string]string, err error) {
	f := &routeFinder{base: base, registrars: registrars, fset: token.NewFileSet(),
		pkgs: map[string]*srcPackage{}, patterns: map[string]string{}}
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(finderError)
			if !ok {
				panic(r)
			}
			patterns, err = nil, errors.New(fe.msg)
		}
	}()
	f.walk(routeRegistrar{".", "Daemon", "routes"})
	return f.patterns, nil
}

// docPath turns a ServeMux pattern's path into the document's path:
// "{$}" goes, "{x...}" is "{x}", and a subtree "/p/" is "/p/{path}".
func docPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	p = regexp.MustCompile(`\{(\w+)\.\.\.\}`).ReplaceAllString(p, "{$1}")
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		p += "{path}"
	}
	return p
}

// requestPath makes a request path that a pattern's path (or a document
// path) matches.
func requestPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	p = regexp.MustCompile(`\{\w+(\.\.\.)?\}`).ReplaceAllString(p, "x1")
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		p += "x1"
	}
	return p
}

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatalf("read the API document: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v", openAPIFile, err)
	}
	if v, _ := doc["openapi"].(string); v != "3.0.3" {
		t.Fatalf("%s: openapi = %q, want 3.0.3", openAPIFile, v)
	}
	// A null is never meant in this document: it is what an unquoted
	// comma or colon in a flow-style {a: b, c} value makes of the rest.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case nil:
			t.Errorf("%s: %s is null: quote a value holding \", \" or \": \"", openAPIFile, path)
		case map[string]any:
			for k, e := range x {
				walk(path+"/"+k, e)
			}
		case []any:
			for i, e := range x {
				walk(path+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("", doc)
	return doc
}

func mapAt(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m, _ = m[k].(map[string]any)
	}
	return m
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIRoutes checks that docs/openapi.yaml has every route the
// daemon serves, with its method, and no other (the embedded SFU's
// Realtime API excepted: it is Cloudflare's).
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	patterns, err := findRoutes(".", routeRegistrars)
	if err != nil {
		t.Fatalf("finding the routes in the source: %v", err)
	}
	if len(patterns) < 10 {
		t.Fatalf("found only %d route patterns in the source: %v", len(patterns), patterns)
	}

	// The patterns found are those of the real mux.
	d, err := New(loopbackConfig(), testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer d.Close()
	mux, ok := d.srv.Handler.(*http.ServeMux)
	if !ok {
		t.Fatalf("the daemon's handler is a %T, not the *http.ServeMux of routes", d.srv.Handler)
	}
	served := map[string]string{} // "METHOD /doc/path" -> pattern
	var sfu []string
	for pat, where := range patterns {
		method, path, hasMethod := strings.Cut(pat, " ")
		if !hasMethod {
			method, path = http.MethodGet, pat
			sfu = append(sfu, pat)
		}
		_, got := mux.Handler(httptest.NewRequest(method, "http://127.0.0.1"+requestPath(path), nil))
		if got != pat {
			t.Errorf("%s registers %q, but the daemon's mux matches %s %s with %q", where, pat, method, requestPath(path), got)
		}
		if hasMethod {
			served[method+" "+docPath(path)] = pat
		}
	}
	slices.Sort(sfu)
	if want := slices.Sorted(slices.Values(sfuPrefixes)); !slices.Equal(sfu, want) {
		t.Errorf("patterns without a method = %q, want only the SFU's %q: document a new route with its method", sfu, want)
	}

	documented := map[string]bool{}
	for path, item := range mapAt(doc, "paths") {
		for _, pre := range sfuPrefixes {
			if strings.HasPrefix(path, pre) {
				t.Errorf("%s documents %s: the Realtime API is Cloudflare's and stays out of it", openAPIFile, path)
			}
		}
		ops, _ := item.(map[string]any)
		for m := range ops {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			op := strings.ToUpper(m) + " " + path
			documented[op] = true
			// Each documented operation resolves on the real mux to a
			// pattern of this path and method.
			_, got := mux.Handler(httptest.NewRequest(strings.ToUpper(m), "http://127.0.0.1"+requestPath(path), nil))
			if served[op] != got || got == "" {
				t.Errorf("%s documents %s, but the daemon's mux matches it with %q", openAPIFile, op, got)
			}
		}
	}
	for op, pat := range served {
		if !documented[op] {
			t.Errorf("%s has no %s (pattern %q registered at %s)", openAPIFile, op, pat, patterns[pat])
		}
	}
	for op := range documented {
		if _, ok := served[op]; !ok {
			t.Errorf("%s documents %s, which the daemon does not serve", openAPIFile, op)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d routes documented, %d SFU prefixes left to Cloudflare's document", len(documented), len(sfu))
}

// schemaChecker compares the document's component schemas with Go types.
type schemaChecker struct {
	t       *testing.T
	schemas map[string]any
	// names maps a Go struct type to the schema that documents it.
	names map[reflect.Type]string
	// tag is the struct tag that names the keys: "json", or "mapstructure"
	// for config items.
	tag  string
	done map[string]bool
}

// resolve follows $ref, and allOf of a single $ref (the OpenAPI 3.0 way
// to make a reference nullable); it returns the schema's name, if it is a
// reference, and the schema.
func (c *schemaChecker) resolve(s map[string]any) (string, map[string]any) {
	if all, ok := s["allOf"].([]any); ok && len(all) == 1 && s["properties"] == nil {
		inner, _ := all[0].(map[string]any)
		s = inner
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		target, ok := c.schemas[name].(map[string]any)
		if !ok {
			c.t.Errorf("dangling $ref %s", ref)
		}
		return name, target
	}
	return "", s
}

// properties merges a schema's properties and required keys, through allOf.
func (c *schemaChecker) properties(s map[string]any) (map[string]map[string]any, map[string]bool) {
	props, req := map[string]map[string]any{}, map[string]bool{}
	if all, ok := s["allOf"].([]any); ok {
		for _, part := range all {
			ps, _ := part.(map[string]any)
			_, ps = c.resolve(ps)
			p, r := c.properties(ps)
			for k, v := range p {
				props[k] = v
			}
			for k := range r {
				req[k] = true
			}
		}
	}
	for k, v := range mapAt(s, "properties") {
		props[k], _ = v.(map[string]any)
	}
	if r, ok := s["required"].([]any); ok {
		for _, k := range r {
			req[k.(string)] = true
		}
	}
	return props, req
}

// goField is a key of a Go struct as it is encoded.
type goField struct {
	name string
	typ  reflect.Type
	omit bool // omitempty or omitzero: absent when empty
}

// fields lists a struct's keys as encoding/json (or mapstructure, for
// the config items) writes them: tagged names, else the Go name;
// embedded structs without a name are flattened.
func (c *schemaChecker) fields(t reflect.Type) []goField {
	var out []goField
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get(c.tag), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, c.fields(ft)...)
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		omit := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		out = append(out, goField{name: name, typ: sf.Type, omit: omit})
	}
	return out
}

// check compares schema name with Go type t, then the schemas its fields
// refer to.
func (c *schemaChecker) check(name string, t reflect.Type) {
	if c.done[name] {
		return
	}
	c.done[name] = true
	s, ok := c.schemas[name].(map[string]any)
	if !ok {
		c.t.Errorf("%s: no schema %s (for %s)", openAPIFile, name, t)
		return
	}
	props, req := c.properties(s)
	fields := c.fields(t)
	seen := map[string]bool{}
	for _, f := range fields {
		seen[f.name] = true
		p, ok := props[f.name]
		if !ok {
			c.t.Errorf("schema %s has no property %q (%s.%s)", name, f.name, t, f.name)
			continue
		}
		if c.tag == "json" && req[f.name] == f.omit {
			c.t.Errorf("schema %s: %q required = %v, but the Go field is always written = %v", name, f.name, req[f.name], !f.omit)
		}
		c.checkType(name+"."+f.name, p, f.typ, f.omit)
	}
	for k := range props {
		if !seen[k] {
			c.t.Errorf("schema %s has property %q, which %s does not have", name, k, t)
		}
	}
	if c.tag == "mapstructure" && s["additionalProperties"] != false {
		c.t.Errorf("schema %s: unknown keys are errors: additionalProperties must be false", name)
	}
}

var timeType = reflect.TypeFor[time.Time]()

func (c *schemaChecker) checkType(where string, p map[string]any, t reflect.Type, omit bool) {
	ref, s := c.resolve(p)
	if t.Kind() == reflect.Pointer {
		if !omit && p["nullable"] != true {
			c.t.Errorf("%s: a %s without omitempty is written as null when unset: add nullable: true", where, t)
		}
		t = t.Elem()
	}
	want := ""
	switch {
	case t == timeType:
		if s["type"] != "string" || s["format"] != "date-time" {
			c.t.Errorf("%s: a time is type string, format date-time", where)
		}
		return
	case c.tag == "mapstructure" && t == reflect.TypeFor[time.Duration]():
		want = "string" // "30s", as the config file writes it
	case t.Kind() == reflect.Struct:
		name, ok := c.names[t]
		if !ok {
			c.t.Errorf("%s: no schema is mapped to %s in this test", where, t)
			return
		}
		if ref != name {
			c.t.Errorf("%s: want $ref #/components/schemas/%s, got %q", where, name, ref)
			return
		}
		c.check(name, t)
		return
	case t.Kind() == reflect.Slice:
		if s["type"] != "array" {
			c.t.Errorf("%s: a %s is type array, got %v", where, t, s["type"])
			return
		}
		items, _ := s["items"].(map[string]any)
		c.checkType(where+"[]", items, t.Elem(), true)
		return
	case t.Kind() == reflect.String:
		want = "string"
	case t.Kind() == reflect.Bool:
		want = "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "number"
	default:
		c.t.Errorf("%s: this test does not map %s to a schema type", where, t)
		return
	}
	if s["type"] != want {
		c.t.Errorf("%s: a %s is type %s, got %v", where, t, want, s["type"])
	}
}

// TestOpenAPISchemas checks that the document's status schemas have the
// JSON fields of the Go types the handlers encode, no more, with matching
// types (required exactly when the field is always written), and that
// the control API's request bodies have the config keys of the items.
func TestOpenAPISchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := mapAt(doc, "components", "schemas")
	names := map[reflect.Type]string{
		reflect.TypeFor[apiError]():                "Error",
		reflect.TypeFor[StreamStatus]():            "StreamStatus",
		reflect.TypeFor[publish.Status]():          "PublishStatus",
		reflect.TypeFor[publish.TrackStatus]():     "PublishTrackStatus",
		reflect.TypeFor[wish.WHIPStatus]():         "WHIPStatus",
		reflect.TypeFor[OutputStatus]():            "OutputStatus",
		reflect.TypeFor[pull.Status]():             "PullStatus",
		reflect.TypeFor[pull.TrackStatus]():        "PullTrackStatus",
		reflect.TypeFor[RecordingStatus]():         "RecordingStatus",
		reflect.TypeFor[RecordingTrackStatus]():    "RecordingTrackStatus",
		reflect.TypeFor[rtpudp.SenderStats]():      "ForwardStatus",
		reflect.TypeFor[rtpudp.SenderTrackStats](): "ForwardTrackStatus",
		reflect.TypeFor[rtpudp.ReceiverStats]():    "ReceiverReport",
	}
	c := &schemaChecker{t: t, schemas: schemas, names: names, tag: "json", done: map[string]bool{}}
	// The roots: what the handlers encode. The schemas they refer to are
	// checked through them, so a schema no handler reaches is reported
	// below.
	c.check("Error", reflect.TypeFor[apiError]())
	c.check("StreamStatus", reflect.TypeFor[StreamStatus]())
	c.check("PublishStatus", reflect.TypeFor[publish.Status]())
	c.check("OutputStatus", reflect.TypeFor[OutputStatus]())
	// The lists GET /api/... wrap them in.
	for list, item := range map[string]string{"StreamList": "streams", "RecordingList": "recordings", "ForwardList": "forwards"} {
		props, req := c.properties(mapAt(schemas, list))
		want := "OutputStatus"
		if list == "StreamList" {
			want = "StreamStatus"
		}
		if ref, _ := c.resolve(mapAt(props[item], "items")); len(props) != 1 || !req[item] || ref != want {
			t.Errorf("schema %s: want exactly the required array %q of %s", list, item, want)
		}
	}

	items := &schemaChecker{t: t, schemas: schemas, tag: "mapstructure", done: map[string]bool{}}
	items.check("StreamItem", reflect.TypeFor[config.Stream]())
	items.check("RecordingItem", reflect.TypeFor[config.Recording]())
	items.check("ForwardItem", reflect.TypeFor[config.Forward]())

	for name := range schemas {
		if !c.done[name] && !items.done[name] && !slices.Contains([]string{"Readiness", "StreamList", "RecordingList", "ForwardList"}, name) {
			t.Errorf("schema %s is checked against no Go type: map it in TestOpenAPISchemas", name)
		}
	}

	// Enumerated values are the code's constants.
	enums := []struct {
		schema, prop string
		want         []string
	}{
		{"PublishStatus", "state", []string{publish.StateStarting, publish.StateLive, publish.StateRetrying,
			publish.StateFailed, publish.StateEnded, publish.StateStopped, wish.StateIdle}},
		{"OutputStatus", "state", []string{string(supervise.StateStarting), string(supervise.StateLive),
			string(supervise.StateRetrying), string(supervise.StateFailed), string(supervise.StateEnded), string(supervise.StateStopped)}},
		{"OutputStatus", "kind", []string{KindRecording, KindForward}},
		{"PullStatus", "state", []string{pull.StateStarting, pull.StateWaiting, pull.StateLive, pull.StateRetrying,
			pull.StateFailed, pull.StateEnded, pull.StateStopped}},
		{"PullTrackStatus", "state", []string{pull.TrackWaiting, pull.TrackPulling, pull.TrackRefused, pull.TrackEnded}},
		{"WHIPStatus", "publisher", []string{wish.PublisherNone, wish.PublisherConnecting, wish.PublisherConnected}},
		{"WHIPStatus", "mode", []string{wish.ModeRelay, wish.ModeProxy}},
		{"RecordingItem", "format", append(slices.Clone(config.RecordFormats), "")},
	}
	for _, e := range enums {
		got := enumOf(mapAt(schemas, e.schema, "properties", e.prop))
		slices.Sort(got)
		want := slices.Sorted(slices.Values(e.want))
		if !slices.Equal(got, want) {
			t.Errorf("schema %s.%s: enum %q, want the code's values %q", e.schema, e.prop, got, want)
		}
	}
	// StreamStatus's own properties (beyond publish.Status).
	props, _ := c.properties(mapAt(schemas, "StreamStatus"))
	types := enumOf(props["type"])
	if slices.Sort(types); !slices.Equal(types, []string{TypeSource, TypeWHIP}) {
		t.Errorf("schema StreamStatus.type: enum %q, want %q", types, []string{TypeSource, TypeWHIP})
	}
}

// enumOf returns a schema's enum values as strings.
func enumOf(s map[string]any) []string {
	var out []string
	vals, _ := s["enum"].([]any)
	for _, v := range vals {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// TestRouteFinder checks the source reader on made-up packages: it
// follows the mux through loops and registrars, and refuses, rather than
// skipping, what it cannot follow.
func TestRouteFinder(t *testing.T) {
	const header = "package gateway\n\nimport \"net/http\"\n\ntype Daemon struct{ h *Handler }\ntype Handler struct{}\n\n"
	write := func(t *testing.T, body string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "routes.go"), []byte(header+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	regs := map[string]routeRegistrar{"d.more": {".", "Daemon", "more"}, "d.h.Register": {".", "Handler", "Register"}}

	dir := write(t, `
const assets = "GET /static/"

var pages = []struct{ pattern, file string }{{"GET /{$}", "index.html"}, {pattern: "GET /w/{s}", file: "w.html"}}

func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /a", nil)
	d.more(mux)
	d.h.Register(mux)
	return mux
}

func (d *Daemon) more(m *http.ServeMux) {
	for _, k := range []struct{ path, kind string }{{"x", kindX}, {"y", "y"}} {
		m.Handle("DELETE /api/"+k.path+"/{name}", nil)
	}
	for _, p := range pages {
		m.Handle(p.pattern, nil)
	}
	m.Handle(assets, nil)
}

func (h *Handler) Register(mux *http.ServeMux) {
	for _, p := range []string{"/whip/", "/whep/"} {
		mux.Handle("PATCH "+p+"{id}", nil)
	}
}
`)
	got, err := findRoutes(dir, regs)
	if err != nil {
		t.Fatalf("findRoutes: %v", err)
	}
	want := []string{"DELETE /api/x/{name}", "DELETE /api/y/{name}", "GET /static/", "GET /a", "GET /w/{s}",
		"GET /{$}", "PATCH /whep/{id}", "PATCH /whip/{id}"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, slices.Sorted(slices.Values(want))) {
		t.Errorf("found %q, want %q", keys, want)
	}

	for _, c := range []struct{ name, body, want string }{
		{"alias", `func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	m := mux
	m.Handle("GET /hidden", nil)
	return mux
}`, "use of the mux this test does not understand"},
		{"stored", `var saved *http.ServeMux
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	saved = mux
	return mux
}`, "use of the mux"},
		{"unknown registrar", `func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	register(mux)
	return mux
}
func register(mux *http.ServeMux) {}`, "the mux is passed to register"},
		{"computed pattern", `func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(pattern(), nil)
	return mux
}
func pattern() string { return "GET /x" }`, "cannot evaluate pattern()"},
		{"range over a call", `func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	for _, p := range paths() {
		mux.Handle("GET "+p, nil)
	}
	return mux
}
func paths() []string { return nil }`, "cannot evaluate p"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := findRoutes(write(t, c.body), regs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("findRoutes = %v, %v; want an error with %q", got, err, c.want)
			}
		})
	}
}
