package e2e

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/xdp"
)

// TestLab_XDPFlood (issue 13): a bounded SYN flood from random sources
// against the FullNAT VIP, many times the connection table's size, while
// 200 long-lived FullNAT and 200 DSR connections send a request every
// 100 ms. Every held connection keeps being answered, every established
// flow keeps its conntrack entry (new flows live in ct_new until their
// second packet), and the FullNAT service's new-flow rate drops and
// counts the flood above it.
func TestLab_XDPFlood(t *testing.T) {
	const (
		ctSize   = 4096 // the probers' 400 flows and their new connections' closing entries fit
		floodPkt = 100000
		rate     = 2000 // FullNAT new flows a second
	)
	r := newXDPRigWith(t, xdp.Options{ConnTrackSize: ctSize}, "hping3")
	r.newFlowRate = rate
	r.apply(map[string]uint32{"server1": 1, "server2": 1, "server3": 1})

	// The probers watch past the flood (bounded to 25 s below) and end.
	observe := 30 * time.Second
	pd := startProber(t, r.l, "dsr", "81", 200, observe)
	pf := startProber(t, r.l, "fullnat", "80", 200, observe)
	held := r.established()
	if len(held) < 400 {
		t.Fatalf("%d established flows in conntrack before the flood, want the probers' 400", len(held))
	}
	pd.mark(t)
	pf.mark(t)
	before := r.fullNATStats()

	// Bounded by count (10 s at 10k packets a second) and by time.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.l.Command(ctx, r.l.Client, "timeout", "25", "hping3", "-S", "-p", "80", "--rand-source",
		"-i", "u100", "-c", strconv.Itoa(floodPkt), labVIP.String()).CombinedOutput()
	// hping3 exits 1 when no reply came back (the replies go to the
	// random sources).
	m := regexp.MustCompile(`(\d+) packets transmitted`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("hping3: %v: %s", err, out)
	}
	sent, _ := strconv.Atoi(string(m[1]))
	t.Logf("hping3: %s", out)
	after := r.fullNATStats()

	kept := r.established()
	lost := 0
	for k := range held {
		if !kept[k] {
			lost++
		}
	}
	dsr, full := pd.result(t), pf.result(t)
	newFlows, drops := after.NewFlows-before.NewFlows, after.Drops.NewFlowRate-before.Drops.NewFlowRate
	t.Logf("flood: %d SYNs sent; FullNAT service: %d new flows opened, %d dropped by the new-flow rate (%d/s); "+
		"established flows in conntrack: %d before, %d after, %d of the held ones lost",
		sent, newFlows, drops, rate, len(held), len(kept), lost)
	if sent < ctSize*10 {
		t.Errorf("hping3 sent %d SYNs, want at least %d (ten times the table)", sent, ctSize*10)
	}
	if lost != 0 {
		t.Errorf("%d established flows lost their conntrack entry to the flood", lost)
	}
	if drops == 0 || newFlows+drops < uint64(sent)/2 {
		t.Errorf("%d new flows and %d rate drops for %d SYNs sent", newFlows, drops, sent)
	}
	for _, res := range []struct {
		name string
		n, k int
	}{{"dsr", dsr.Conns, dsr.Survived}, {"fullnat", full.Conns, full.Survived}} {
		if res.n != 200 || res.k != res.n {
			t.Errorf("%s: %d of %d held connections kept working through the flood, want all 200", res.name, res.k, res.n)
		}
	}
}

// established returns the live established flows (client, VIP) to the
// VIP in the dataplane's connection tables: conntrack, and for FullNAT
// nat_reverse too (Flows reads both; a flood evicting there would evict
// from both LRUs alike).
func (r *xdpRig) established() map[[2]netip.AddrPort]bool {
	r.t.Helper()
	out := map[[2]netip.AddrPort]bool{}
	err := r.d.Flows(func(f dataplane.Flow) bool {
		if f.VIP.Addr() == labVIP && f.Established && !f.Closing {
			out[[2]netip.AddrPort{f.Client, f.VIP}] = true
		}
		return true
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// fullNATStats returns the counters of the FullNAT service (VIP:80).
func (r *xdpRig) fullNATStats() xdp.Counters {
	r.t.Helper()
	st, err := r.d.Stats()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Port == 80 {
			return s.Counters
		}
	}
	r.t.Fatal("no FullNAT service")
	return xdp.Counters{}
}
