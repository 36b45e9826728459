package api

// The API's codecs. connect-go's own drop fields the schema does not have
// (its JSON codec sets DiscardUnknown; binary protobuf keeps them as unknown
// bytes nobody looks at), so a misspelled field would be ignored and the
// resource written without it. These reject such a request with
// InvalidArgument naming the field by its path.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// strictCodecs replace connect-go's "proto", "json" and
// "json; charset=utf-8" codecs.
func strictCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCodec(strictProto{}),
		connect.WithCodec(strictJSON{name: "json"}),
		connect.WithCodec(strictJSON{name: "json; charset=utf-8"}),
	}
}

// strictProto is binary protobuf that refuses unknown fields.
type strictProto struct{}

var _ connect.Codec = strictProto{}

func (strictProto) Name() string { return "proto" }

func (strictProto) Marshal(v any) ([]byte, error) {
	m, err := message(v)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(m)
}

func (strictProto) Unmarshal(b []byte, v any) error {
	m, err := message(v)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return err
	}
	return unknownProtoField(m.ProtoReflect(), "")
}

// unknownProtoField reports the first unknown field in m or a message
// inside it, in field order. path is m's place in the request, in the JSON
// names error messages use elsewhere ("pool.spec"); "" for the request.
func unknownProtoField(m protoreflect.Message, path string) error {
	if raw := m.GetUnknown(); len(raw) > 0 {
		num, _, _ := protowire.ConsumeTag(raw)
		if path == "" {
			return fmt.Errorf("unknown field number %d in %s", num, m.Descriptor().FullName())
		}
		return fmt.Errorf("unknown field number %d in %q (%s)", num, path, m.Descriptor().FullName())
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := joinPath(path, fd.JSONName())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			entries := m.Get(fd).Map()
			keys := make([]protoreflect.MapKey, 0, entries.Len())
			entries.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return cmp.Compare(a.String(), b.String()) })
			for _, k := range keys {
				if err := unknownProtoField(entries.Get(k).Message(), fmt.Sprintf("%s[%q]", p, k.String())); err != nil {
					return err
				}
			}
		case fd.Message() == nil:
		case fd.IsList():
			items := m.Get(fd).List()
			for j := range items.Len() {
				if err := unknownProtoField(items.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j)); err != nil {
					return err
				}
			}
		default:
			if err := unknownProtoField(m.Get(fd).Message(), p); err != nil {
				return err
			}
		}
	}
	return nil
}

// strictJSON is protojson that refuses unknown fields.
type strictJSON struct{ name string }

var _ connect.Codec = strictJSON{}

func (c strictJSON) Name() string { return c.name }

func (strictJSON) Marshal(v any) ([]byte, error) {
	m, err := message(v)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(m)
}

func (strictJSON) Unmarshal(b []byte, v any) error {
	m, err := message(v)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("empty body: want a JSON object")
	}
	err = protojson.Unmarshal(b, m) // DiscardUnknown is false
	if err == nil {
		return nil
	}
	// protojson names an unknown field but not where it is; find its path.
	// Only failed requests pay for the second parse.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if dec.Decode(&doc) == nil {
		if path, ok := unknownJSONField(m.ProtoReflect().Descriptor(), doc, ""); ok {
			return fmt.Errorf("unknown field %q", path)
		}
	}
	return err
}

// unknownJSONField returns the path of the first key (in sorted order at
// each level) of v that is no field of md, if there is one. Keys are taken as
// the request spells them: protojson accepts a field's JSON name and its
// proto name.
func unknownJSONField(md protoreflect.MessageDescriptor, v any, path string) (string, bool) {
	obj, ok := v.(map[string]any)
	if !ok || md.ParentFile().Package() == "google.protobuf" {
		// Not an object (protojson reports that), or a well-known type
		// with a JSON form of its own (a Duration is "5s").
		return "", false
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		p := joinPath(path, k)
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		switch {
		case fd == nil:
			return p, true
		case fd.IsMap(), fd.Message() == nil:
			// The API's maps hold strings; should one hold messages, an
			// unknown field in them is still refused, by protojson's error.
		case fd.IsList():
			items, _ := obj[k].([]any)
			for i, item := range items {
				if u, ok := unknownJSONField(fd.Message(), item, fmt.Sprintf("%s[%d]", p, i)); ok {
					return u, true
				}
			}
		default:
			if u, ok := unknownJSONField(fd.Message(), obj[k], p); ok {
				return u, true
			}
		}
	}
	return "", false
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func message(v any) (proto.Message, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", v)
	}
	return m, nil
}
