package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogWriterLevels(t *testing.T) {
	tests := []struct {
		line string
		want string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4", "level=DEBUG msg=\"Stream connection from=1.2.3.4\""},
		{"[WARN] memberlist: Refuting a dead message", "level=WARN msg=\"Refuting a dead message\""},
		{"[ERR] memberlist: Failed to send", "level=ERROR msg=\"Failed to send\""},
		{"no prefix", "level=INFO msg=\"no prefix\""},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			var buf bytes.Buffer
			w := &logWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			w.Write([]byte(tc.line + "\n"))
			if got := buf.String(); !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}
