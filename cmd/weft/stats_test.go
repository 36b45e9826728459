package main

import (
	"bytes"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// statsAt is an answer at second sec with one tcp and one http listener,
// each with one backend, whose counters are scaled by n.
func statsAt(sec int64, n uint64) *weftv1.GetStatsResponse {
	return &weftv1.GetStatsResponse{Time: timestamppb.New(time.Unix(sec, 0)), Nodes: []string{"n1", "n2"},
		Missing: []*weftv1.MissingNode{{Node: "n3", Reason: "Unavailable: refused"}},
		LoadBalancers: []*weftv1.LoadBalancerStats{{Name: "web", Vip: "198.51.100.10",
			TopClients:  []*weftv1.TopSource{{Source: "203.0.113.5", NewFlows: 1500, Limited: 300}, {Source: "192.0.2.1", NewFlows: 2}},
			TopPrefixes: []*weftv1.TopSource{{Source: "203.0.113.0/24", NewFlows: 1502, Limited: 300}},
			Listeners: []*weftv1.ListenerStats{
				{Name: "tcp-80", Protocol: "tcp", Port: 80,
					Traffic: &weftv1.TrafficCounters{Packets: 1000 * n, Bytes: 125000 * n, NewFlows: 10 * n, ActiveFlows: 7, Drops: n},
					Backends: []*weftv1.BackendStats{{Pool: "web", Address: "192.0.2.11", Port: 8080, Health: "up",
						Traffic: &weftv1.TrafficCounters{Packets: 1000 * n, ActiveFlows: 7}}}},
				{Name: "http-8080", Protocol: "http", Port: 8080,
					Requests: &weftv1.RequestCounters{Requests: 100 * n, Status_2Xx: 90 * n, Status_5Xx: 5 * n, NoStatus: 5 * n},
					Backends: []*weftv1.BackendStats{{Pool: "web", Address: "192.0.2.11", Port: 8080, Health: "down", Drain: true}}},
			}}}}
}

func TestSampleOf(t *testing.T) {
	s := sampleOf(statsAt(100, 1), statsAt(102, 5))
	if s.GetIntervalSeconds() != 2 {
		t.Fatalf("interval %v, want 2", s.GetIntervalSeconds())
	}
	tcp := s.GetLoadBalancers()[0].GetListeners()[0].GetRates()
	// 4 units over 2 s: 2000 pps, 250k bytes/s = 2 Mbit/s, 20 new flows/s.
	if tcp.GetPackets() != 2000 || tcp.GetBits() != 2e6 || tcp.GetNewFlows() != 20 || tcp.GetDrops() != 2 || tcp.GetActiveFlows() != 7 {
		t.Errorf("tcp rates %v, want 2000 pps, 2e6 bps, 20 new/s, 2 drops/s, 7 open", tcp)
	}
	if b := s.GetLoadBalancers()[0].GetListeners()[0].GetBackends()[0].GetRates(); b.GetPackets() != 2000 {
		t.Errorf("backend rates %v, want 2000 pps", b)
	}
	http := s.GetLoadBalancers()[0].GetListeners()[1].GetRates()
	if http.GetRequests() != 200 || math.Abs(http.GetErrorRatio()-0.1) > 1e-9 {
		t.Errorf("http rates %v, want 200 req/s and an error ratio of 0.1", http)
	}

	// A counter that went down (a node restarted) is no traffic; so is a
	// listener the first answer did not have.
	back := sampleOf(statsAt(100, 5), statsAt(101, 1))
	if r := back.GetLoadBalancers()[0].GetListeners()[0].GetRates(); r.GetPackets() != 0 || r.GetActiveFlows() != 7 {
		t.Errorf("after a reset: %v, want 0 pps and 7 open", r)
	}
	// A node more in the second answer is no traffic: no rates at all.
	fewer := statsAt(100, 1)
	fewer.Nodes = []string{"n1"}
	if s := sampleOf(fewer, statsAt(101, 5)); !s.GetNodesChanged() ||
		s.GetLoadBalancers()[0].GetListeners()[0].GetRates().GetPackets() != 0 ||
		s.GetLoadBalancers()[0].GetListeners()[0].GetRates().GetActiveFlows() != 7 {
		t.Errorf("nodes n1 then n1, n2: %v, want nodes changed, no rates, 7 open", s)
	}
	if sampleOf(statsAt(100, 1), statsAt(101, 5)).GetNodesChanged() {
		t.Error("the same nodes twice: nodes changed")
	}
	empty := &weftv1.GetStatsResponse{Time: timestamppb.New(time.Unix(100, 0)), Nodes: []string{"n1", "n2"}}
	if r := sampleOf(empty, statsAt(101, 5)).GetLoadBalancers()[0].GetListeners()[1].GetRates(); r.GetRequests() != 0 {
		t.Errorf("without a first sample: %v, want no requests", r)
	}
}

func TestPrintSample(t *testing.T) {
	var b bytes.Buffer
	if err := printSample(&b, sampleOf(statsAt(100, 1), statsAt(101, 3)), true, true, false); err != nil {
		t.Fatal(err)
	}
	want := `rates over 1.0s, summed over n1, n2; not counted: n3 (Unavailable: refused)
LB    LISTENER    BACKEND               HEALTH   PPS    BPS    NEW/S   ACTIVE   DROPS/S   REQ/S   ERR%
web   tcp-80                            1/1 up   2.0k   2.0M   20      7        2.0       -       -
web               web/192.0.2.11:8080   up       2.0k   0      0       7        0         -       -
web   http-8080                         0/1 up   -      -      -       -        -         200     10.0
web               web/192.0.2.11:8080   down     -      -      -       -        -         0       0.0

top clients of web (198.51.100.10) by new flows, sampled over the last 10-20s:
CLIENT        NEW/S   LIMITED/S
203.0.113.5   1.5k    300
192.0.2.1     2.0     0

top source prefixes of web (198.51.100.10) by new flows, sampled over the last 10-20s:
PREFIX           NEW/S   LIMITED/S
203.0.113.0/24   1.5k    300
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestWriteComment(t *testing.T) {
	var b bytes.Buffer
	if err := writeComment(&b, "a   b\n\nc\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "# a   b\n#\n# c\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSI(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.25: "0.2", 9.96: "10.0", 12.4: "12", 999: "999", 1000: "1.0k",
		123456: "123.5k", 9.8e6: "9.8M", 2e12: "2.0T", 5e18: "5000.0P"} {
		if got := si(v); got != want {
			t.Errorf("si(%v) = %q, want %q", v, got, want)
		}
	}
}
