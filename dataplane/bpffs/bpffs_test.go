package bpffs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestMount mounts a bpf filesystem on a temporary directory (not on
// Path, which belongs to the machine), pins a map in it, and mounts again:
// the second Mount must leave the first in place, pin included.
func TestMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a filesystem needs root (CAP_SYS_ADMIN)")
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Skipf("BPF not available: %v", err)
	}
	defer m.Close()
	dir := t.TempDir()
	t.Cleanup(func() {
		for {
			if on, err := IsMounted(dir); err != nil || !on {
				return
			}
			if err := unix.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
				return
			}
		}
	})
	pin := filepath.Join(dir, "weft-bpffs-test")
	steps := []struct {
		name        string
		dir         string
		wantMounted bool
		wantErr     string
		then        func(t *testing.T)
	}{
		{"not on a bpf filesystem: mounts one", dir, true, "", func(t *testing.T) {
			if err := m.Pin(pin); err != nil {
				t.Fatalf("pin a map on the mounted filesystem: %v", err)
			}
		}},
		{"already on one: leaves it", dir, false, "", func(t *testing.T) {
			if got, err := Pins(dir); err != nil || !slices.Equal(got, []string{filepath.Base(pin)}) {
				t.Errorf("Pins(%s) = %v, %v; want the pin made before, %s", dir, got, err, filepath.Base(pin))
			}
		}},
		{"missing directory", filepath.Join(dir, "missing"), false, filepath.Join(dir, "missing"), nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mounted, err := Mount(st.dir)
			if st.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), st.wantErr) {
					t.Fatalf("Mount(%s) error = %v, want one naming %s", st.dir, err, st.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mount(%s): %v", st.dir, err)
			}
			if mounted != st.wantMounted {
				t.Errorf("Mount(%s) mounted = %v, want %v", st.dir, mounted, st.wantMounted)
			}
			if on, err := IsMounted(st.dir); err != nil || !on {
				t.Errorf("IsMounted(%s) after Mount = %v, %v; want true", st.dir, on, err)
			}
			if st.then != nil {
				st.then(t)
			}
		})
	}
}
