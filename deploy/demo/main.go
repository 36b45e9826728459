// Command demo is `make demo`: Weft end to end on the lab (deploy/lab).
//
// It builds a client, a bird2 router, a switch, three Weft nodes in two
// zones (XDP dataplane, BGP) and four HTTP servers in network namespaces
// with the prefix "weftd", forms a cluster with `weft agent --init` and a
// join token, applies deploy/examples/lab.yaml, sends traffic through the
// VIP, SIGKILLs a node while traffic runs, restarts it, and leaves the
// cluster running for the reader to poke at; `demo -down` (make demo-down)
// removes it. Without root it runs the single-node userspace demo
// (dev.sh) instead. Run it from the repository root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/dataplane/bpffs"
	"github.com/weftlb/weft/deploy/lab"
)

const (
	prefix   = "weftd"
	manifest = "deploy/examples/lab.yaml"
	vip      = "198.51.100.10"
)

var topology = lab.Topology{Prefix: prefix, Servers: 4, Nodes: []lab.Node{
	{Name: "node1", Zone: "a"}, {Name: "node2", Zone: "a"}, {Name: "node3", Zone: "b"},
}}

// stateDir holds the nodes' data dirs, the processes' logs, the lab server
// binary and the client environment; it lives until make demo-down.
func stateDir() string { return filepath.Join(os.TempDir(), "weft-demo-"+prefix) }

// pinDir is where the switch-side XDP pass programs stay attached after
// the demo exits (a bpf link lives as long as a pin or a process holds it).
const pinDir = bpffs.Path

// bpffsMark, in the state dir, says that the demo mounted the bpf
// filesystem on pinDir, so that make demo-down unmounts it again.
const bpffsMark = "bpffs-mounted"

func main() {
	down := flag.Bool("down", false, "remove the demo's lab, cluster and files (make demo-down)")
	weft := flag.String("weft", "", "weft binary to run (default: build ./cmd/weft into bin/weft)")
	flag.Parse()
	if _, err := os.Stat(manifest); err != nil {
		fail(fmt.Errorf("run from the repository root (make demo): %w", err))
	}
	if err := lab.Requirements(); err != nil {
		if *down {
			fmt.Printf("nothing to remove: %v, so no lab demo can be running.\n", err)
			return
		}
		fail(fallback(err, *weft))
	}
	if *down {
		unmounted, err := teardown()
		if err != nil {
			fail(err)
		}
		fmt.Printf("removed the demo: namespaces %s-*, their processes, the pins %s/%s-pass-* and %s\n",
			prefix, pinDir, prefix, stateDir())
		if unmounted {
			fmt.Printf("unmounted the bpf filesystem the demo had mounted on %s\n", pinDir)
		}
		return
	}
	// Every wait inside is bounded; this bounds what is not (apt-get).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *weft); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "demo:", err)
	os.Exit(1)
}

// fallback replaces this process with the single-node demo, which needs no
// root: one node on loopback forwarding with the userspace dataplane.
func fallback(why error, weft string) error {
	fmt.Printf("The lab demo cannot run here: %v.\nIt builds network namespaces, attaches XDP programs and runs bird2.\n"+
		"Running the single-node demo instead (deploy/demo/dev.sh: one node on loopback, userspace dataplane).\n"+
		"For the full demo: sudo make demo\n", why)
	if weft == "" {
		if err := goBuild("bin/weft", "./cmd/weft"); err != nil {
			return err
		}
	}
	script := "deploy/demo/dev.sh"
	return syscall.Exec(script, []string{script}, os.Environ())
}

// teardown removes everything the demo made, and unmounts the bpf
// filesystem if the demo mounted it and nothing else is pinned there; it
// is safe to run at any time. On an error it keeps the state dir (logs,
// and the mark of the mount) for a look and the next try.
func teardown() (unmounted bool, err error) {
	l := &lab.Lab{Topology: lab.Topology{Prefix: prefix}}
	err = l.Down()
	pins, _ := filepath.Glob(filepath.Join(pinDir, prefix+"-pass-*"))
	for _, p := range pins {
		if rmErr := os.Remove(p); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}
	if err != nil {
		return false, err
	}
	if _, statErr := os.Stat(filepath.Join(stateDir(), bpffsMark)); statErr == nil {
		if unmounted, err = unmountBPFFS(); err != nil {
			return false, err
		}
	}
	return unmounted, os.RemoveAll(stateDir())
}

// unmountBPFFS unmounts the bpf filesystem on pinDir unless something else
// is pinned in it (another program's pins would go with it).
func unmountBPFFS() (bool, error) {
	if on, err := bpffs.IsMounted(pinDir); err != nil || !on {
		return false, err
	}
	left, err := bpffs.Pins(pinDir)
	if err != nil || len(left) > 0 {
		return false, err
	}
	if err := unix.Unmount(pinDir, 0); err != nil {
		return false, fmt.Errorf("unmount the bpf filesystem on %s: %w", pinDir, err)
	}
	return true, nil
}

func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}
