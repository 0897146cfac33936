package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix prefixes every environment variable: key path "http.listen" is
// RTGATE_HTTP_LISTEN.
const EnvPrefix = "RTGATE"

// flagKeyAnnotation is the pflag annotation BindFlag sets; its one value is
// the key path the flag sets.
const flagKeyAnnotation = "rtgate/config-key"

// leaf is one settable key of the schema: a non-struct field of Config.
type leaf struct {
	key   string       // key path, "webrtc.nack.generator_size"
	index []int        // field index path in Config
	typ   reflect.Type // field type
}

var (
	// leaves lists every key path in schema order.
	leaves = collectLeaves(reflect.TypeFor[Config](), "", nil)
	// leafByKey and leafByFlag index leaves by key path and by the
	// canonical flag name of the key ("webrtc-nack-generator-size").
	leafByKey, leafByFlag = indexLeaves(leaves)
)

func collectLeaves(t reflect.Type, prefix string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key := joinKey(prefix, f.Tag.Get("mapstructure"))
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, collectLeaves(f.Type, key, idx)...)
			continue
		}
		out = append(out, leaf{key: key, index: idx, typ: f.Type})
	}
	return out
}

func indexLeaves(ls []leaf) (byKey, byFlag map[string]leaf) {
	byKey = make(map[string]leaf, len(ls))
	byFlag = make(map[string]leaf, len(ls))
	for _, l := range ls {
		byKey[l.key] = l
		byFlag[FlagName(l.key)] = l
	}
	return byKey, byFlag
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// Keys returns every key path of the schema, in schema order.
func Keys() []string {
	keys := make([]string, len(leaves))
	for i, l := range leaves {
		keys[i] = l.key
	}
	return keys
}

// EnvName returns the environment variable of a key path:
// "realtime.app_id" is RTGATE_REALTIME_APP_ID.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// FlagName returns the canonical flag name of a key path, the one Load
// binds without an annotation: "webrtc.udp_port" is "webrtc-udp-port",
// "log.level" is "log-level".
func FlagName(key string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(key)
}

// BindFlag makes Load read the flag called name in fs as the value of key,
// for flags whose name is not FlagName(key) (--app-id for realtime.app_id,
// --listen for sfu.listen). It panics if the flag or the key does not
// exist: both are programming errors.
func BindFlag(fs *pflag.FlagSet, name, key string) {
	if _, ok := leafByKey[key]; !ok {
		panic(fmt.Sprintf("config.BindFlag: unknown key %q", key))
	}
	if err := fs.SetAnnotation(name, flagKeyAnnotation, []string{key}); err != nil {
		panic(fmt.Sprintf("config.BindFlag: %v", err))
	}
}

// flagKey returns the key path a flag sets, or "" if it sets none.
func flagKey(f *pflag.Flag) string {
	if ann := f.Annotations[flagKeyAnnotation]; len(ann) == 1 {
		return ann[0]
	}
	if l, ok := leafByFlag[f.Name]; ok {
		return l.key
	}
	return ""
}

// Load builds a Config from, in increasing precedence, the defaults, the
// YAML file at path (none when path is empty), RTGATE_* environment
// variables and the flags of flags that were set on the command line (nil
// means none). A flag sets the key BindFlag gave it or, without one, the
// key whose FlagName it has.
//
// Every environment variable takes the value's text: durations as "30s",
// lists comma-separated ("1.2.3.4,5.6.7.8"), maps as comma-separated
// key=value pairs ("pion=warn,sfu=debug"); RTGATE_WEBRTC_ICE_SERVERS is
// either comma-separated URLs (one server each, no credentials) or a JSON
// list of {"urls": [...], "username": ..., "credential": ...}.
//
// Problems with the file's keys (an unknown key, a scalar where a section
// belongs) and values that cannot be decoded to their key's type are
// returned together as Errors. Load does not call Validate; Check does
// both.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	cfg, errs, err := load(path, flags)
	switch {
	case err != nil:
		return nil, err
	case len(errs) > 0:
		return nil, errs
	}
	return cfg, nil
}

// Check is Load followed by Validate that reports the problems of both at
// once: a file with an unknown key and a bad port gets both named. Values
// that could not be decoded are not validated again. It returns the Config
// only when there is no problem.
func Check(path string, flags *pflag.FlagSet) (*Config, error) {
	cfg, errs, err := load(path, flags)
	if err != nil {
		return nil, err
	}
	var verrs Errors
	if !errors.As(cfg.Validate(), &verrs) && len(errs) == 0 {
		return cfg, nil
	}
	for _, ve := range verrs {
		if !slices.ContainsFunc(errs, func(le *FieldError) bool { return within(ve.Key, le.Key) }) {
			errs = append(errs, ve)
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return keyOrder(a.Key) - keyOrder(b.Key) })
	return nil, errs
}

// within reports whether key path k is p or inside it.
func within(k, p string) bool {
	return k == p || strings.HasPrefix(k, p+".") || strings.HasPrefix(k, p+"[")
}

// keyOrder is the position of a key path's leaf in the schema, for sorting
// problems; keys not in the schema (unknown keys) come first.
func keyOrder(k string) int {
	for i, l := range leaves {
		if within(k, l.key) {
			return i + 1
		}
	}
	return 0
}

// load does the work of Load: err is a file that cannot be read or
// parsed; errs are the problems of keys and values, with cfg holding every
// value that could be decoded.
func load(path string, flags *pflag.FlagSet) (cfg *Config, errs Errors, err error) {
	v := viper.New()
	def := reflect.ValueOf(Default()).Elem()
	for _, l := range leaves {
		v.SetDefault(l.key, def.FieldByIndex(l.index).Interface())
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	var inFile map[string]bool
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read config file: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, nil, fmt.Errorf("parse config file %s: %w", path, err)
		}
		inFile = make(map[string]bool)
		errs = append(errs, checkNode(&doc, reflect.TypeFor[Config](), "", inFile)...)
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, nil, fmt.Errorf("parse config file %s: %w", path, err)
		}
	}

	bound := make(map[string]*pflag.Flag)
	if flags != nil {
		var bindErr error
		flags.VisitAll(func(f *pflag.Flag) {
			key := flagKey(f)
			if key == "" {
				return
			}
			bound[key] = f
			if err := v.BindPFlag(key, f); err != nil {
				bindErr = errors.Join(bindErr, fmt.Errorf("bind flag --%s to %s: %w", f.Name, key, err))
			}
		})
		if bindErr != nil {
			return nil, nil, bindErr
		}
	}

	cfg = &Config{sources: make(map[string]string, len(leaves))}
	rv := reflect.ValueOf(cfg).Elem()
	for _, l := range leaves {
		raw := v.Get(l.key)
		src := source(l.key, bound[l.key], inFile)
		cfg.sources[l.key] = src
		// checkNode has already reported unknown keys of the file.
		strict := src != "config file"
		if err := decodeValue(raw, rv.FieldByIndex(l.index).Addr().Interface(), strict); err != nil {
			errs = append(errs, decodeErrors(l.key, raw, err)...)
		}
	}
	return cfg, errs, nil
}

// source says where Load took key's value from; it mirrors viper's order.
func source(key string, f *pflag.Flag, inFile map[string]bool) string {
	if f != nil && f.Changed {
		return "flag --" + f.Name
	}
	env := EnvName(key)
	if val, ok := os.LookupEnv(env); ok && val != "" { // viper ignores empty variables
		return "environment " + env
	}
	if inFile[key] {
		return "config file"
	}
	return "default"
}

// checkNode walks a YAML node against the struct type t and reports the
// keys t does not have. It records in inFile the key paths of t's leaves
// the file sets to something other than null.
func checkNode(n *yaml.Node, t reflect.Type, path string, inFile map[string]bool) Errors {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case n.Kind == 0: // empty document
		return nil
	case n.Kind == yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return checkNode(n.Content[0], t, path, inFile)
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil
	case n.Kind != yaml.MappingNode:
		where := path
		if where == "" {
			where = "(top level)"
		}
		return Errors{{Key: where, Value: nodeText(n), Msg: fmt.Sprintf("must be a section with keys %s (line %d)",
			strings.Join(fieldNames(t), ", "), n.Line)}}
	}

	fields := make(map[string]reflect.StructField)
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() {
			fields[f.Tag.Get("mapstructure")] = f
		}
	}
	var errs Errors
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" { // YAML merge key: checked where it is anchored
			continue
		}
		key := joinKey(path, k.Value)
		f, ok := fields[strings.ToLower(k.Value)]
		if !ok {
			msg := fmt.Sprintf("unknown key (line %d", k.Line)
			if s := suggest(strings.ToLower(k.Value), fieldNames(t)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", joinKey(path, s))
			}
			errs = append(errs, &FieldError{Key: key, Msg: msg + ")"})
			continue
		}
		key = joinKey(path, f.Tag.Get("mapstructure"))
		switch {
		case f.Type.Kind() == reflect.Struct:
			errs = append(errs, checkNode(val, f.Type, key, inFile)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			inFile[key] = inFile[key] || val.Tag != "!!null"
			if val.Kind != yaml.SequenceNode {
				continue // decoding reports what it is
			}
			for j, e := range val.Content {
				errs = append(errs, checkNode(e, f.Type.Elem(), fmt.Sprintf("%s[%d]", key, j), inFile)...)
			}
		default:
			inFile[key] = inFile[key] || val.Tag != "!!null"
		}
	}
	return errs
}

// nodeText renders a node's value for an error message.
func nodeText(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.SequenceNode:
		return "[...]"
	default:
		return "{...}"
	}
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, f.Tag.Get("mapstructure"))
		}
	}
	return names
}

// suggest returns the candidate closest to s when it is close enough to be
// a typo of it.
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist && d <= max(len(c)/3, 1) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeValue decodes one key's raw value (from the file, an environment
// variable, a flag or the defaults) into the field out points to. With
// strict, unknown keys inside list items (the JSON form of ice servers) are
// errors.
func decodeValue(raw any, out any, strict bool) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:      out,
		DecodeHook:  decodeHook,
		ErrorUnused: strict,
		TagName:     "mapstructure",
	})
	if err != nil {
		return err
	}
	return d.Decode(raw)
}

// valueError is a decode failure that knows the offending value.
type valueError struct {
	value any
	msg   string
}

func (e *valueError) Error() string { return e.msg }

var (
	durationType   = reflect.TypeFor[time.Duration]()
	stringsType    = reflect.TypeFor[[]string]()
	iceServersType = reflect.TypeFor[[]ICEServer]()
	streamsType    = reflect.TypeFor[[]Stream]()
	levelsType     = reflect.TypeFor[map[string]string]() // log.levels, the one map
	// jsonLists are the list-of-objects keys an environment variable or
	// flag sets as a JSON list.
	jsonLists = map[reflect.Type]string{
		streamsType:                    "streams",
		reflect.TypeFor[[]Recording](): "recordings",
		reflect.TypeFor[[]Forward]():   "forwards",
	}
)

// decodeHook turns the text of environment variables and flags, and YAML
// scalars of the wrong but convertible type, into the field types. It
// replaces mapstructure's weak typing, which would also accept true for a
// port or 30 for a duration.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	s, isString := data.(string)
	switch {
	case to == durationType && from != durationType:
		switch {
		case isString:
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return nil, &valueError{data, `must be a duration such as "30s" or "500ms"`}
			}
			return d, nil
		case isNumber(from):
			return nil, &valueError{data, `must be a duration with a unit, such as "30s" or "500ms"`}
		}
	case to == stringsType && isString:
		return splitList(s), nil
	case to == iceServersType && isString:
		return parseICEServers(s)
	case to == levelsType && isString:
		return parseLevels(s)
	case jsonLists[to] != "" && isString:
		var list []map[string]any
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			return nil, &valueError{s, fmt.Sprintf("must be a JSON list of %s: %v", jsonLists[to], err)}
		}
		return list, nil
	case to.Kind() == reflect.String && (isNumber(from) || from.Kind() == reflect.Bool):
		return fmt.Sprint(data), nil
	case isString && isInt(to):
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, &valueError{data, "must be an integer"}
		}
		return n, nil
	case isString && isFloat(to):
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, &valueError{data, "must be a number"}
		}
		return f, nil
	case isString && to.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, &valueError{data, "must be true or false"}
		}
		return b, nil
	}
	return data, nil
}

// splitList splits a comma-separated list, trimming blanks around items
// and dropping empty ones.
func splitList(s string) []string {
	out := []string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseICEServers reads the text form of webrtc.ice_servers: a JSON list
// of servers, or comma-separated URLs, one server each.
func parseICEServers(s string) ([]map[string]any, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var list []map[string]any
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			return nil, &valueError{s, fmt.Sprintf("must be comma-separated URLs or a JSON list of servers: %v", err)}
		}
		return list, nil
	}
	list := []map[string]any{}
	for _, u := range splitList(s) {
		list = append(list, map[string]any{"urls": []string{u}})
	}
	return list, nil
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func isFloat(t reflect.Type) bool {
	return t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64
}

func isNumber(t reflect.Type) bool { return isInt(t) || isFloat(t) }

// decodeErrors turns a mapstructure error for key into FieldErrors naming
// the full key path of each problem and, where known, its value.
func decodeErrors(key string, raw any, err error) Errors {
	var errs Errors
	var walk func(name string, err error)
	walk = func(name string, err error) {
		var de *mapstructure.DecodeError
		if errors.As(err, &de) && !isJoin(err) {
			walk(de.Name(), de.Unwrap())
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(name, e)
			}
			return
		}
		path := key
		switch {
		case strings.HasPrefix(name, "["):
			path += name
		case name != "":
			path += "." + name
		}
		fe := &FieldError{Key: path}
		var (
			ve *valueError
			ue *mapstructure.UnconvertibleTypeError
			pe *mapstructure.ParseError
		)
		switch {
		case errors.As(err, &ve):
			fe.Value, fe.Msg = formatValue(ve.value), ve.msg
		case errors.As(err, &ue):
			fe.Value, fe.Msg = formatValue(ue.Value), "must be "+describe(ue.Expected.Type())
		case errors.As(err, &pe):
			fe.Value, fe.Msg = formatValue(pe.Value), "must be "+describe(pe.Expected.Type())
		default:
			if name == "" {
				fe.Value = formatValue(raw)
			}
			fe.Msg = err.Error()
		}
		if sensitive(path) {
			fe.Value = ""
		}
		errs = append(errs, fe)
	}
	walk("", err)
	return errs
}

// sensitive reports whether a key path's value must not appear in messages:
// the app secret, TURN credentials (also inside the JSON text of
// RTGATE_WEBRTC_ICE_SERVERS) and WHIP/WHEP tokens.
func sensitive(path string) bool {
	return path == "realtime.app_secret" || path == "webrtc.ice_servers" || strings.HasSuffix(path, ".credential") ||
		strings.HasSuffix(path, ".token") || strings.HasSuffix(path, "_token")
}

func isJoin(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

// describe names a field type for "must be ..." messages.
func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "30s"`
	case t == levelsType:
		return "a map of component to level, such as {pion: warn, sfu: debug}"
	case isInt(t):
		return "an integer"
	case isFloat(t):
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Struct:
		return "a section with keys " + strings.Join(fieldNames(t), ", ")
	}
	return t.String()
}
