package console

// The YAML conversions: the console's text box holds YAML documents as
// `weft apply -f` reads them, which the page turns into the resources of an
// ApplyRequest here and then sends to the Apply RPC itself, as the CLI
// does; and a resource read from the API is turned into YAML to edit.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// yamlText is the body of a decode request and of an encode answer.
type yamlText struct {
	YAML string `json:"yaml"`
}

// ManifestHandler serves, under ManifestPath, the POST procedures
//
//	decode: {"yaml": "..."} to {"resources": [...]}, an ApplyRequest's JSON
//	encode: {"resources": [...]} to {"yaml": "..."}, status left out
//
// and answers errors as the Connect protocol does ({"code", "message"}), so
// the page shows them as it shows the API's: a decode error is the one
// `weft apply -f` prints for the same text. They read nothing from the
// state; the API mounts them behind its authentication.
func ManifestHandler() http.Handler {
	errw := connect.NewErrorWriter()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ManifestPath+"decode", func(w http.ResponseWriter, r *http.Request) {
		var in yamlText
		if err := decodeJSON(r, &in); err != nil {
			fail(w, r, errw, err)
			return
		}
		rs, err := manifest.Decode(strings.NewReader(in.YAML))
		if err == nil && len(rs) == 0 {
			err = errors.New("no resources in the text")
		}
		if err != nil {
			fail(w, r, errw, err)
			return
		}
		out, err := protojson.Marshal(&weftv1.ApplyRequest{Resources: rs})
		if err != nil {
			fail(w, r, errw, fmt.Errorf("encode resources: %w", err))
			return
		}
		reply(w, out)
	})
	mux.HandleFunc("POST "+ManifestPath+"encode", func(w http.ResponseWriter, r *http.Request) {
		var in weftv1.ApplyRequest
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = protojson.Unmarshal(body, &in)
		}
		if err != nil {
			fail(w, r, errw, fmt.Errorf("request: %w", err))
			return
		}
		for _, res := range in.GetResources() {
			clearStatus(res)
		}
		var buf bytes.Buffer
		if err := manifest.Encode(&buf, in.GetResources()); err != nil {
			fail(w, r, errw, err)
			return
		}
		out, err := json.Marshal(yamlText{YAML: buf.String()})
		if err != nil {
			fail(w, r, errw, err)
			return
		}
		reply(w, out)
	})
	return secure(mux, "no-store")
}

// decodeJSON reads r's body into v, refusing unknown fields as the API's
// codecs do.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	return nil
}

// clearStatus drops what the server computes from a resource: the YAML to
// edit holds what an operator writes.
func clearStatus(r *weftv1.Resource) {
	m := r.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("kind"))
	if fd == nil {
		return
	}
	inner := m.Get(fd).Message()
	if status := inner.Descriptor().Fields().ByName("status"); status != nil {
		inner.Clear(status)
	}
}

func reply(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the caller is gone.
	_, _ = w.Write(body)
}

// fail answers err as InvalidArgument: every failure here is of the text
// or request sent.
func fail(w http.ResponseWriter, r *http.Request, errw *connect.ErrorWriter, err error) {
	_ = errw.Write(w, r, connect.NewError(connect.CodeInvalidArgument, err))
}
