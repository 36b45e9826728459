// Package bpffs mounts the bpf filesystem, where BPF programs, maps and
// links are pinned so they outlive the process that made them. A fresh
// machine may have none mounted (systemd mounts one; a minimal VM or
// container does not), and pinning there fails.
package bpffs

import (
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// Path is where Linux systems mount the bpf filesystem.
const Path = "/sys/fs/bpf"

// Mount mounts a bpf filesystem on dir unless dir is already on one, and
// reports whether it mounted one. The mount is root's only (mode 0700, as
// systemd mounts it): what is pinned there is the machine's dataplane.
func Mount(dir string) (mounted bool, err error) {
	on, err := IsMounted(dir)
	if err != nil || on {
		return false, err
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("mount -t bpf bpf %s: %w", dir, err)
	}
	return true, nil
}

// IsMounted reports whether dir is on a bpf filesystem.
func IsMounted(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	// Statfs_t.Type is signed on some architectures.
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}

// kernelFiles are the files the kernel puts at the top of every bpf
// filesystem it mounts (bpf_preload's iterators): not pins.
var kernelFiles = []string{"maps.debug", "progs.debug"}

// Pins returns the names of what is pinned in dir, a directory of a bpf
// filesystem, sorted, without the kernel's own files.
func Pins(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list the pins in %s: %w", dir, err)
	}
	var pins []string
	for _, e := range entries {
		if !slices.Contains(kernelFiles, e.Name()) {
			pins = append(pins, e.Name())
		}
	}
	return pins, nil
}
