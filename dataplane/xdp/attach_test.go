package xdp

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAttachGenericFallback attaches to the loopback interface of a new
// network namespace: loopback has no native XDP, so Attach must fall back
// to generic mode and warn.
func TestAttachGenericFallback(t *testing.T) {
	var logs bytes.Buffer
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: testTableSize,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	errc := make(chan error, 1)
	go func() {
		// The thread stays in the namespace and exits with the
		// goroutine, since it is never unlocked.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- d.Attach("lo")
	}()
	err := <-errc
	if err == unix.EPERM {
		t.Skip("creating a network namespace needs CAP_SYS_ADMIN")
	}
	if err != nil {
		t.Fatalf("Attach(lo): %v", err)
	}
	if !strings.Contains(logs.String(), "generic mode") {
		t.Errorf("no generic-mode warning logged; logs: %q", logs.String())
	}
	if err := d.Attach("no-such-interface0"); err == nil {
		t.Errorf("Attach of a missing interface succeeded")
	}
}
