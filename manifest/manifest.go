// Package manifest reads and writes the YAML documents `weft apply -f`
// takes, and renders API output for the CLI (JSON, YAML, tables).
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	sigsyaml "sigs.k8s.io/yaml"
)

// APIVersion is the optional apiVersion of a document; Encode writes it.
const APIVersion = "weft.dev/v1"

// Decode reads multi-document YAML, one resource per document; empty
// documents are skipped. A document has kind (LoadBalancer, Pool,
// Certificate or DNSRecord), metadata ({name, labels, version}) and spec,
// with fields named as in protojson (lowerCamelCase, e.g. primaryZone;
// proto names such as primary_zone are accepted too) and durations written
// like "5s". apiVersion is optional but must be weft.dev/v1 when given.
// status is ignored: the server computes it, and ignoring it lets the output
// of `weft get -o yaml` be applied again. Unknown fields are errors naming
// the document and the field: `document 2 (Pool "web"): unknown field
// "spec.memberz"`.
//
// Scalars follow YAML 1.2: `zone: no` is the string "no", and booleans are
// written true and false.
func Decode(r io.Reader) ([]*weftv1.Resource, error) {
	dec := yaml.NewDecoder(r)
	var out []*weftv1.Resource
	for n := 1; ; n++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
			continue
		}
		res, err := decodeDocument(n, &doc)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
}

// topLevel lists the fields a document may have. status is accepted and
// ignored (see Decode).
var topLevel = []string{"apiVersion", "kind", "metadata", "spec", "status"}

// decodeDocument decodes document n. Its errors name the document, and its
// kind and name as soon as they are known.
func decodeDocument(n int, doc *yaml.Node) (*weftv1.Resource, error) {
	var kind, name string
	fail := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		switch {
		case kind == "":
			return fmt.Errorf("document %d: %w", n, err)
		case name == "":
			return fmt.Errorf("document %d (%s): %w", n, kind, err)
		default:
			return fmt.Errorf("document %d (%s %q): %w", n, kind, name, err)
		}
	}
	if err := checkDuplicateKeys(doc); err != nil {
		return nil, fail("%w", err)
	}
	quotePlainStrings(doc)
	y, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fail("%w", err)
	}
	j, err := sigsyaml.YAMLToJSON(y)
	if err != nil {
		return nil, fail("%w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(j, &fields); err != nil {
		return nil, fail("want a mapping with kind, metadata and spec")
	}
	apiVersion, err := stringField(fields, "apiVersion")
	if err != nil {
		return nil, fail("%w", err)
	}
	if apiVersion != "" && apiVersion != APIVersion {
		return nil, fail("apiVersion %q is not supported (want %s)", apiVersion, APIVersion)
	}
	if kind, err = stringField(fields, "kind"); err != nil {
		return nil, fail("%w", err)
	}
	if kind == "" {
		return nil, fail("missing kind (%s)", kindNames())
	}
	name = peekName(fields["metadata"])
	for _, k := range sortedKeys(fields) {
		if !slices.Contains(topLevel, k) {
			return nil, fail("unknown field %q", k)
		}
	}
	fd := kindField(kind)
	if fd == nil {
		return nil, fail("unknown kind (want %s)", kindNames())
	}

	res := &weftv1.Resource{}
	m := res.ProtoReflect().Mutable(fd).Message()
	for _, part := range []struct {
		name string
		raw  json.RawMessage
	}{{"metadata", fields["metadata"]}, {"spec", fields["spec"]}} {
		if isNull(part.raw) {
			continue
		}
		field := m.Descriptor().Fields().ByName(protoreflect.Name(part.name))
		if err := unmarshalPart(part.name, part.raw, m.Mutable(field).Message()); err != nil {
			return nil, fail("%w", err)
		}
	}
	return res, nil
}

// stringField returns the string at key in a document's top level, or ""
// when it is missing or null.
func stringField(fields map[string]json.RawMessage, key string) (string, error) {
	raw := fields[key]
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s: want a string, got %s", key, raw)
	}
	return s, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// peekName returns metadata.name for error messages, or "" when there is
// no such string.
func peekName(raw json.RawMessage) string {
	var md struct{ Name any }
	if json.Unmarshal(raw, &md) != nil {
		return ""
	}
	name, _ := md.Name.(string)
	return name
}

// unmarshalPart decodes one part of a document (metadata or spec) into m.
func unmarshalPart(path string, raw json.RawMessage, m protoreflect.Message) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keeps uint64 values exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := checkFields(m.Descriptor(), v, path); err != nil {
		return err
	}
	// checkFields may have rewritten durations.
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := protojson.Unmarshal(b, m.Interface()); err != nil {
		return fmt.Errorf("%s: %s", path, cleanProtoError(err))
	}
	return nil
}

// checkFields checks v, decoded JSON for a message md at path, for unknown
// fields and values of the wrong type, so the error can name the field's
// path (protojson names only the field). It also rewrites durations
// written as Go durations ("5m", "1h30m") to protojson's seconds ("300s").
// Value ranges and formats are left to protojson.
func checkFields(md protoreflect.MessageDescriptor, v any, path string) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: want a mapping, got %s", path, jsonText(v))
	}
	for _, k := range sortedKeys(obj) {
		p := path + "." + k
		// protojson accepts both the JSON name and the proto name.
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		if fd == nil {
			return fmt.Errorf("unknown field %q", p)
		}
		val := obj[k]
		if val == nil {
			continue // protojson reads null as unset
		}
		var err error
		switch {
		case fd.IsMap():
			entries, ok := val.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: want a mapping, got %s", p, jsonText(val))
			}
			for _, ek := range sortedKeys(entries) {
				if entries[ek], err = checkValue(fd.MapValue(), entries[ek], p+"."+ek); err != nil {
					return err
				}
			}
		case fd.IsList():
			items, ok := val.([]any)
			if !ok {
				return fmt.Errorf("%s: want a list, got %s", p, jsonText(val))
			}
			for i := range items {
				if items[i], err = checkValue(fd, items[i], fmt.Sprintf("%s[%d]", p, i)); err != nil {
					return err
				}
			}
		default:
			if obj[k], err = checkValue(fd, val, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkValue checks v, one value of the kind fd holds, and returns it,
// rewritten when it is a Go-style duration.
func checkValue(fd protoreflect.FieldDescriptor, v any, path string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch fd.Message().FullName() {
		case "google.protobuf.Duration":
			d, err := duration(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return d, nil
		case "google.protobuf.Timestamp":
			if _, ok := v.(string); !ok {
				return nil, fmt.Errorf("%s: want a time such as \"2025-01-02T15:04:05Z\", got %s", path, jsonText(v))
			}
			return v, nil
		}
		return v, checkFields(fd.Message(), v, path)
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			return nil, fmt.Errorf("%s: want a string, got %s (quote it)", path, jsonText(v))
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return nil, fmt.Errorf("%s: want true or false, got %s", path, jsonText(v))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		// protojson reads numbers in strings too; ranges are its to check.
		if s, ok := v.(string); ok {
			if _, err := strconv.ParseFloat(s, 64); err == nil {
				return v, nil
			}
		}
		if _, ok := v.(json.Number); !ok {
			return nil, fmt.Errorf("%s: want a number, got %s", path, jsonText(v))
		}
	}
	return v, nil
}

// protoDuration is protojson's form of a duration: seconds with up to nine
// decimals.
var protoDuration = regexp.MustCompile(`^-?[0-9]+(\.[0-9]{1,9})?s$`)

// duration returns v, a duration in protojson form or as Go writes it
// ("1m30s", "500ms"), in protojson form.
func duration(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a duration such as \"5s\" or \"1m30s\", got %s", jsonText(v))
	}
	if protoDuration.MatchString(s) {
		return s, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a duration; write one such as \"5s\" or \"1m30s\"", s)
	}
	b, err := protojson.Marshal(durationpb.New(d))
	if err != nil {
		return "", err
	}
	return strings.Trim(string(b), `"`), nil
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// protojson's errors start with "proto:" and the position in the JSON; the
// JSON here is made from the YAML, so the position would mislead.
var (
	protoPrefix = regexp.MustCompile(`^proto:[\s\x{a0}]*(\(line \d+:\d+\):[\s\x{a0}]*)?`)
	protoPos    = regexp.MustCompile(`[\s\x{a0}]*\(line \d+:\d+\)`)
)

func cleanProtoError(err error) string {
	s := protoPrefix.ReplaceAllString(err.Error(), "")
	return protoPos.ReplaceAllString(s, "")
}

// checkDuplicateKeys rejects a mapping with a key given twice, which the
// YAML to JSON conversion would otherwise resolve silently to the last.
func checkDuplicateKeys(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				continue
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		if err := checkDuplicateKeys(c); err != nil {
			return err
		}
	}
	return nil
}

// quotePlainStrings quotes every plain scalar that YAML 1.2 reads as a
// string. The YAML to JSON conversion reads YAML 1.1, where `no`, `on` or
// `y` are booleans; quoting keeps the meaning the user's YAML 1.2 parser
// (and this package's) gave them.
func quotePlainStrings(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Style == 0 && n.ShortTag() == "!!str" {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quotePlainStrings(c)
	}
}

// Encode writes rs as multi-document YAML in the shape Decode reads:
// apiVersion, kind, metadata, spec and, when set, status. Fields keep
// their declaration order in the proto, so specs read top-down (vip before
// listeners, name before port).
func Encode(w io.Writer, rs []*weftv1.Resource) error {
	if len(rs) == 0 {
		return nil // the encoder fails to close an empty stream
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	for i, r := range rs {
		m, fd := set(r)
		if m == nil {
			return fmt.Errorf("encode resource %d: no kind set", i+1)
		}
		doc := &yaml.Node{Kind: yaml.MappingNode}
		addPair(doc, "apiVersion", strNode(APIVersion))
		addPair(doc, "kind", strNode(string(fd.Message().Name())))
		for _, part := range []protoreflect.Name{"metadata", "spec", "status"} {
			f := m.Descriptor().Fields().ByName(part)
			if f == nil || !m.Has(f) {
				continue
			}
			n, err := messageNode(m.Get(f).Message().Interface())
			if err != nil {
				return fmt.Errorf("encode %s %q: %w", fd.Message().Name(), NameOf(r), err)
			}
			addPair(doc, string(part), n)
		}
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("encode %s %q: %w", fd.Message().Name(), NameOf(r), err)
		}
	}
	return enc.Close()
}

func addPair(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, strNode(key), v)
}

// yaml11Bools are plain words that YAML 1.1 readers (PyYAML, older tools)
// read as booleans; the encoder quotes only what YAML 1.2 would misread.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
}

func strNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if yaml11Bools[s] {
		n.Style = yaml.DoubleQuotedStyle
	}
	if strings.Contains(s, "\n") {
		// PEM and other multi-line text reads best as a block; the encoder
		// falls back to quoting when a block cannot hold the text exactly.
		n.Style = yaml.LiteralStyle
	}
	return n
}

// messageNode renders m with protojson and turns the JSON into a YAML node,
// keeping protojson's field order.
func messageNode(m proto.Message) (*yaml.Node, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return jsonNode(dec)
}

// jsonNode reads one JSON value from dec as a YAML node.
func jsonNode(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Kind: yaml.MappingNode}
		if v == '[' {
			n.Kind = yaml.SequenceNode
		}
		for dec.More() {
			if n.Kind == yaml.MappingNode {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, strNode(k.(string)))
			}
			c, err := jsonNode(dec)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle // {} and [] rather than nothing
		}
		return n, nil
	case string:
		return strNode(v), nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(v), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(v)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(v)}, nil
	default:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
}
