package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/userspace"
	"github.com/weftlb/weft/deploy/lab"
)

// forwarderEnv names the config file when the test binary is re-executed
// inside a lab namespace to run the userspace dataplane there: sockets a
// process opens belong to its namespace, which one goroutine cannot
// arrange for the proxy's dials. SIGHUP reloads the file; SIGUSR1 writes
// the stats next to it.
const forwarderEnv = "WEFT_E2E_FORWARDER_CONFIG"

func runForwarder(path string) {
	f := userspace.New(userspace.Options{})
	load := func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var cfg dataplane.Config
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err
		}
		return f.Apply(context.Background(), cfg)
	}
	if err := load(); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
	os.WriteFile(path+".ready", nil, 0o644)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM)
	for s := range sig {
		switch s {
		case syscall.SIGHUP:
			if err := load(); err != nil {
				fmt.Fprintln(os.Stderr, "forwarder reload:", err)
			}
			os.WriteFile(path+".reloaded", nil, 0o644)
		case syscall.SIGUSR1:
			b, _ := json.Marshal(f.Stats())
			os.WriteFile(path+".stats", b, 0o644)
		default:
			f.Close()
			os.Exit(0)
		}
	}
}

type usRig struct {
	*labRig
	cmd     *exec.Cmd
	cfgPath string
}

func (r *usRig) write(weights map[string]uint32) {
	svc := dataplane.Service{VIP: labVIP, Port: 80, Proto: dataplane.ProtoTCP}
	for _, s := range r.l.Servers {
		if w, ok := weights[s.Name]; ok {
			svc.Backends = append(svc.Backends, dataplane.Backend{Addr: s.Addr, Port: 8080, Weight: w})
		}
	}
	b, err := json.Marshal(dataplane.Config{Services: []dataplane.Service{svc}})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(r.cfgPath, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// signalAndWait sends sig and waits for the file the forwarder writes.
func (r *usRig) signalAndWait(sig syscall.Signal, suffix string) []byte {
	os.Remove(r.cfgPath + suffix)
	r.cmd.Process.Signal(sig)
	var b []byte
	waitFor(r.t, 5*time.Second, "forwarder "+suffix, func() error {
		var err error
		b, err = os.ReadFile(r.cfgPath + suffix)
		return err
	})
	return b
}

func (r *usRig) newFlows() map[string]uint64 {
	var st []userspace.ServiceStats
	if err := json.Unmarshal(r.signalAndWait(syscall.SIGUSR1, ".stats"), &st); err != nil || len(st) != 1 {
		r.t.Fatalf("forwarder stats: %v %v", st, err)
	}
	out := map[string]uint64{}
	for id, b := range st[0].Backends {
		out[id] = b.NewFlows
	}
	return out
}

// TestLab_Userspace runs issue 3's lab checks with the userspace driver in
// place of XDP: the node holds the VIP on lo and proxies it.
func TestLab_Userspace(t *testing.T) {
	l := upLab(t, lab.Topology{Prefix: "weftu", Nodes: []lab.Node{{Name: "node1", Zone: "a"}}, Servers: 3},
		[]string{"curl", "wrk"}, false, "-addr", ":8080")
	node := l.Nodes[0]
	for _, args := range [][]string{
		{"ip", "-n", node.NS, "addr", "add", labVIP.String() + "/32", "dev", "lo"},
		{"ip", "-n", l.Router.NS, "route", "add", labVIP.String() + "/32", "via", node.Addr.String()},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	r := &usRig{labRig: &labRig{t: t, l: l}, cfgPath: filepath.Join(t.TempDir(), "forwarder.json")}
	r.write(map[string]uint32{"server1": 1, "server2": 1, "server3": 1})
	r.cmd = exec.Command("ip", "netns", "exec", node.NS, os.Args[0], "-test.run=^$")
	r.cmd.Env = append(os.Environ(), forwarderEnv+"="+r.cfgPath)
	r.cmd.Stderr = os.Stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Signal(syscall.SIGTERM); r.cmd.Wait() })
	waitFor(t, 10*time.Second, "forwarder ready", func() error { _, err := os.Stat(r.cfgPath + ".ready"); return err })

	body, err := r.curl("80")
	if err != nil || !strings.HasPrefix(body, "server") {
		t.Fatalf("curl through the VIP: %q %v", body, err)
	}
	before := r.newFlows()
	reqs, errs := r.wrk("80", 3, "-H", "Connection: close")
	if reqs == 0 || errs != 0 {
		t.Fatalf("wrk with a connection per request: %d requests, %d errors", reqs, errs)
	}
	after := r.newFlows()
	var total uint64
	for id := range after {
		total += after[id] - before[id]
	}
	if total < uint64(reqs) {
		t.Fatalf("the forwarder counted %d new flows for %d new connections", total, reqs)
	}
	for _, s := range l.Servers {
		id := netip.AddrPortFrom(s.Addr, 8080).String()
		share := float64(after[id]-before[id]) / float64(total)
		t.Logf("%s: %.1f%% of %d flows", s.Name, share*100, total)
		if share < 1.0/3*0.9 || share > 1.0/3*1.1 {
			t.Errorf("%s took %.1f%% of the flows, want 33.3%% ± 10%%", s.Name, share*100)
		}
	}
	done := make(chan [2]int)
	go func() { a, b := r.wrk("80", 4); done <- [2]int{a, b} }()
	time.Sleep(time.Second)
	r.write(map[string]uint32{"server1": 1, "server2": 3, "server3": 1})
	r.signalAndWait(syscall.SIGHUP, ".reloaded")
	time.Sleep(time.Second)
	r.write(map[string]uint32{"server1": 1, "server2": 3})
	r.signalAndWait(syscall.SIGHUP, ".reloaded")
	if res := <-done; res[0] == 0 || res[1] != 0 {
		t.Errorf("wrk across a weight change and a removal: %d requests, %d errors", res[0], res[1])
	}
}
