package raftfsm

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	hclog "github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Named("raft").Named("net").With("peer", "n2").Warn("failed to dial", "error", "boom")
	l.Debug("not written")
	l.StandardLogger(nil).Print("from the standard logger")

	var lines []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2: %s", len(lines), buf.String())
	}
	want := map[string]any{"level": "WARN", "msg": "failed to dial", "logger": "raft.net", "peer": "n2", "error": "boom"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("first line %s = %v, want %v", k, lines[0][k], v)
		}
	}
	if lines[1]["msg"] != "from the standard logger" {
		t.Errorf("second line msg = %v, want %q", lines[1]["msg"], "from the standard logger")
	}
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("IsDebug %v, IsInfo %v, GetLevel %v; want false, true, Info", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
}
