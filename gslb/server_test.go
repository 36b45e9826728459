package gslb

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testZone is a zone with one record of each kind the server answers.
func testZone() Zone {
	lb := func(name, addr, region string, prio uint32, healthy bool) Target {
		return Target{Name: name, Addr: netip.MustParseAddr(addr), Region: region, Weight: 1, Priority: prio, Healthy: healthy}
	}
	big := make([]string, 20)
	for i := range big {
		big[i] = strings.Repeat(string(rune('a'+i)), 200)
	}
	return Zone{
		Name:        "Example.COM",
		Nameservers: []string{"ns1.example.com.", "ns2.example.com."},
		NegativeTTL: 17,
		Regions: []Region{
			{Name: "eu", Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
			{Name: "us", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("127.0.0.0/8")}},
		},
		Records: []Record{
			{Name: "ns1.example.com.", Source: "ns1", TTL: 60, Type: dns.TypeA, Values: []string{"192.0.2.53"}},
			{Name: "www.example.com.", Source: "www", TTL: 20, Policy: Failover, Targets: []Target{
				lb("web-eu", "192.0.2.1", "eu", 1, true), lb("web-us", "192.0.2.2", "us", 2, true), lb("web-v6", "2001:db8::1", "eu", 1, true)}},
			{Name: "down.example.com.", Source: "down", TTL: 20, Policy: AllHealthy, Targets: []Target{
				lb("a", "192.0.2.11", "", 0, false), lb("b", "192.0.2.12", "", 0, false)}},
			{Name: "geo.example.com.", Source: "geo", TTL: 20, Policy: Geo, Targets: []Target{
				lb("geo-eu", "192.0.2.21", "eu", 0, true), lb("geo-us", "192.0.2.22", "us", 0, true)}},
			{Name: "alias.example.com.", Source: "alias", TTL: 40, Type: dns.TypeCNAME, Values: []string{"www.example.com"}},
			{Name: "txt.deep.example.com.", Source: "txt", TTL: 50, Type: dns.TypeTXT, Values: []string{`v=spf1 "quoted" -all`}},
			{Name: "big.example.com.", Source: "big", TTL: 50, Type: dns.TypeTXT, Values: big},
		},
	}
}

func startServer(t *testing.T, opts Options, cfg Config) *Server {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return s
}

func exchange(t *testing.T, s *Server, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatalf("%s query %v: %v", network, m.Question, err)
	}
	return r
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func rrText(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	return out
}

func TestServer_Answers(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1}, Config{Region: "us", Serial: 7, Zones: []Zone{testZone()}})
	soa := "example.com. 17 IN SOA ns1.example.com. hostmaster.example.com. 7 3600 600 604800 17"
	cases := []struct {
		name       string
		qname      string
		qtype      uint16
		rcode      int
		answer, ns []string
		extra      []string
	}{
		{name: "static A", qname: "ns1.example.com.", qtype: dns.TypeA,
			answer: []string{"ns1.example.com. 60 IN A 192.0.2.53"}},
		{name: "case insensitive", qname: "NS1.ExAmPlE.cOm.", qtype: dns.TypeA,
			answer: []string{"ns1.example.com. 60 IN A 192.0.2.53"}},
		{name: "failover primary, its TTL", qname: "www.example.com.", qtype: dns.TypeA,
			answer: []string{"www.example.com. 20 IN A 192.0.2.1"}},
		{name: "AAAA of a steered record", qname: "www.example.com.", qtype: dns.TypeAAAA,
			answer: []string{"www.example.com. 20 IN AAAA 2001:db8::1"}},
		{name: "NODATA: a type the name lacks", qname: "www.example.com.", qtype: dns.TypeTXT, ns: []string{soa}},
		{name: "NXDOMAIN with the SOA and negative TTL", qname: "nope.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "empty non-terminal is NODATA", qname: "deep.example.com.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "CNAME chased in the zone", qname: "alias.example.com.", qtype: dns.TypeA,
			answer: []string{"alias.example.com. 40 IN CNAME www.example.com.", "www.example.com. 20 IN A 192.0.2.1"}},
		{name: "CNAME asked for", qname: "alias.example.com.", qtype: dns.TypeCNAME,
			answer: []string{"alias.example.com. 40 IN CNAME www.example.com."}},
		{name: "TXT with quotes", qname: "txt.deep.example.com.", qtype: dns.TypeTXT,
			answer: []string{`txt.deep.example.com. 50 IN TXT "v=spf1 \"quoted\" -all"`}},
		{name: "SOA", qname: "example.com.", qtype: dns.TypeSOA,
			answer: []string{"example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 7 3600 600 604800 17"}},
		{name: "NS with glue", qname: "example.com.", qtype: dns.TypeNS,
			answer: []string{"example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.com."},
			extra:  []string{"ns1.example.com. 60 IN A 192.0.2.53"}},
		{name: "minimal ANY (RFC 8482)", qname: "www.example.com.", qtype: dns.TypeANY,
			answer: []string{`www.example.com. 3600 IN HINFO "RFC8482" ""`}},
		{name: "fail open: every target down", qname: "down.example.com.", qtype: dns.TypeA,
			answer: []string{"down.example.com. 20 IN A 192.0.2.11", "down.example.com. 20 IN A 192.0.2.12"}},
		{name: "refused outside the zones", qname: "example.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "refused for the parent", qname: "com.", qtype: dns.TypeNS, rcode: dns.RcodeRefused},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := question(tc.qname, tc.qtype)
			m.RecursionDesired = true
			r := exchange(t, s, "udp", m)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode: got %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if r.RecursionAvailable {
				t.Error("RA set: the server does no recursion")
			}
			if want := tc.rcode != dns.RcodeRefused; r.Authoritative != want {
				t.Errorf("AA: got %v, want %v", r.Authoritative, want)
			}
			if r.Question[0].Name != tc.qname {
				t.Errorf("question echoed as %q, want %q", r.Question[0].Name, tc.qname)
			}
			if got := rrText(r.Answer); !equalSorted(got, tc.answer) {
				t.Errorf("answer:\n got %q\nwant %q", got, tc.answer)
			}
			if got := rrText(r.Ns); !equalSorted(got, tc.ns) {
				t.Errorf("authority:\n got %q\nwant %q", got, tc.ns)
			}
			if got := rrText(r.Extra); !equalSorted(got, tc.extra) {
				t.Errorf("additional:\n got %q\nwant %q", got, tc.extra)
			}
		})
	}
}

func equalSorted(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestServer_TruncationAndTCP(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1}, Config{Zones: []Zone{testZone()}})
	cases := []struct {
		name    string
		edns    uint16 // 0: no EDNS
		network string
		wantTC  bool
		maxSize int
	}{
		{"udp without EDNS", 0, "udp", true, 512},
		{"udp with EDNS 4096 is capped at 1232", 4096, "udp", true, MaxUDPSize},
		{"tcp", 0, "tcp", false, dns.MaxMsgSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := question("big.example.com.", dns.TypeTXT)
			if tc.edns > 0 {
				m.SetEdns0(tc.edns, false)
			}
			r := exchange(t, s, tc.network, m)
			b, err := r.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if r.Truncated != tc.wantTC {
				t.Errorf("TC: got %v, want %v", r.Truncated, tc.wantTC)
			}
			if len(b) > tc.maxSize {
				t.Errorf("response is %d bytes, more than %d", len(b), tc.maxSize)
			}
			if !tc.wantTC && len(r.Answer) != 20 {
				t.Errorf("answers: got %d, want 20", len(r.Answer))
			}
			if opt := r.IsEdns0(); (opt != nil) != (tc.edns > 0) {
				t.Errorf("OPT in the reply: got %v, want %v", opt != nil, tc.edns > 0)
			} else if opt != nil && opt.UDPSize() != MaxUDPSize {
				t.Errorf("advertised UDP size: got %d, want %d", opt.UDPSize(), MaxUDPSize)
			}
		})
	}
	if st := s.Stats(); st.Truncated != 2 || st.TCPQueries != 1 {
		t.Errorf("stats: got %d truncated and %d TCP queries, want 2 and 1", st.Truncated, st.TCPQueries)
	}
}

func TestServer_EDNS(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1}, Config{Zones: []Zone{testZone()}})
	t.Run("unknown EDNS version is BADVERS", func(t *testing.T) {
		m := question("www.example.com.", dns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r := exchange(t, s, "udp", m)
		if r.Rcode != dns.RcodeBadVers {
			t.Errorf("rcode: got %s, want BADVERS", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("ECS with a scope set in the query is FORMERR", func(t *testing.T) {
		m := withECS(question("geo.example.com.", dns.TypeA), "203.0.113.0", 24)
		m.IsEdns0().Option[0].(*dns.EDNS0_SUBNET).SourceScope = 24
		if r := exchange(t, s, "udp", m); r.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode: got %s, want FORMERR", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("ECS source prefix longer than the family's is FORMERR", func(t *testing.T) {
		b, err := withECS(question("geo.example.com.", dns.TypeA), "203.0.113.0", 24).Pack()
		if err != nil {
			t.Fatal(err)
		}
		// The option ends with family (2), source (1), scope (1) and 3
		// address bytes: make the source /33.
		b[len(b)-5] = 33
		c, err := net.Dial("udp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode: got %s, want FORMERR", dns.RcodeToString[r.Rcode])
		}
	})
}

// withECS adds an EDNS Client Subnet option (the address is sent as given,
// not masked, so tests can send bad ones).
func withECS(m *dns.Msg, addr string, bits uint8) *dns.Msg {
	m.SetEdns0(1232, false)
	a := netip.MustParseAddr(addr)
	family := uint16(1)
	if a.Is6() {
		family = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family,
		SourceNetmask: bits, Address: net.IP(a.AsSlice())})
	return m
}

func ecsScope(t *testing.T, r *dns.Msg) int {
	t.Helper()
	for _, o := range r.IsEdns0().Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			return int(e.SourceScope)
		}
	}
	t.Fatal("no ECS option in the reply")
	return -1
}

func TestServer_Geo(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1}, Config{Zones: []Zone{testZone()}})
	cases := []struct {
		name      string
		subnet    string
		bits      uint8
		want      string
		wantScope int
	}{
		{"eu subnet", "203.0.113.0", 24, "192.0.2.21", 24},
		{"us subnet", "198.51.100.0", 24, "192.0.2.22", 24},
		{"the eu /24 at a longer prefix", "203.0.113.128", 25, "192.0.2.21", 24},
		{"no region: every healthy target, scope up to the eu /24", "203.0.0.0", 16, "192.0.2.21 192.0.2.22", 18},
		{"no region: scope up to 127/8 (us)", "10.1.0.0", 16, "192.0.2.21 192.0.2.22", 2},
		{"source /0 falls back to the resolver (127.0.0.1: us)", "0.0.0.0", 0, "192.0.2.22", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, s, "udp", withECS(question("geo.example.com.", dns.TypeA), tc.subnet, tc.bits))
			var got []string
			for _, rr := range r.Answer {
				got = append(got, rr.(*dns.A).A.String())
			}
			slices.Sort(got)
			if strings.Join(got, " ") != tc.want {
				t.Errorf("answer: got %v, want %s", got, tc.want)
			}
			if scope := ecsScope(t, r); scope != tc.wantScope {
				t.Errorf("ECS scope: got /%d, want /%d", scope, tc.wantScope)
			}
		})
	}
	t.Run("without ECS the resolver's address decides", func(t *testing.T) {
		r := exchange(t, s, "udp", question("geo.example.com.", dns.TypeA))
		if got := rrText(r.Answer); len(got) != 1 || !strings.HasSuffix(got[0], "192.0.2.22") {
			t.Errorf("answer from 127.0.0.1 (us): got %q, want geo-us's 192.0.2.22", got)
		}
	})
	t.Run("a non-geo record answers scope 0", func(t *testing.T) {
		r := exchange(t, s, "udp", withECS(question("www.example.com.", dns.TypeA), "203.0.113.0", 24))
		if scope := ecsScope(t, r); scope != 0 {
			t.Errorf("ECS scope: got /%d, want /0", scope)
		}
	})
}

func TestServer_RateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	s := startServer(t, Options{RateLimit: 5, Slip: 2, Now: func() time.Time { return now }}, Config{Zones: []Zone{testZone()}})
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	var answered, truncated, lost int
	for range 15 {
		r, _, err := c.Exchange(question("www.example.com.", dns.TypeA), s.Addr().String())
		switch {
		case err != nil:
			lost++
		case r.Truncated:
			truncated++
		default:
			answered++
		}
	}
	// 5 in the bucket, then of 10 limited every 2nd slips.
	if answered != 5 || truncated != 5 || lost != 5 {
		t.Errorf("got %d answered, %d truncated, %d dropped; want 5, 5, 5", answered, truncated, lost)
	}
	if r := exchange(t, s, "tcp", question("www.example.com.", dns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("TCP is not rate limited: got %d answers, want 1", len(r.Answer))
	}
	if st := s.Stats(); st.RateLimited != 5 || st.Slipped != 5 {
		t.Errorf("stats: got %d limited and %d slipped, want 5 and 5", st.RateLimited, st.Slipped)
	}
	now = now.Add(time.Second)
	if r := exchange(t, s, "udp", question("www.example.com.", dns.TypeA)); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("a second later: got TC=%v and %d answers, want an answer", r.Truncated, len(r.Answer))
	}
}

func TestServer_TransferAndNotify(t *testing.T) {
	// The secondary: a real DNS socket that records the NOTIFYs it gets.
	notified := make(chan *dns.Msg, 4)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sec := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		notified <- r
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})}
	go sec.ActivateAndServe()
	t.Cleanup(func() { sec.Shutdown() })

	z := testZone()
	z.Secondaries = []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	s := startServer(t, Options{RateLimit: -1}, Config{Serial: 10, Zones: []Zone{z}})
	waitNotify := func(serial uint32) {
		t.Helper()
		select {
		case m := <-notified:
			soa, ok := m.Answer[0].(*dns.SOA)
			if m.Opcode != dns.OpcodeNotify || !ok || soa.Serial != serial {
				t.Fatalf("NOTIFY: got opcode %d %v, want NOTIFY with serial %d", m.Opcode, m.Answer, serial)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no NOTIFY for serial %d", serial)
		}
	}
	waitNotify(10)

	axfr := func() []dns.RR {
		t.Helper()
		m := question("example.com.", dns.TypeAXFR)
		env, err := new(dns.Transfer).In(m, s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var rrs []dns.RR
		for e := range env {
			if e.Error != nil {
				t.Fatal(e.Error)
			}
			rrs = append(rrs, e.RR...)
		}
		return rrs
	}
	if r := exchange(t, s, "udp", question("example.com.", dns.TypeAXFR)); r.Rcode != dns.RcodeFormatError {
		t.Errorf("AXFR over UDP: got %s, want FORMERR (TCP only)", dns.RcodeToString[r.Rcode])
	}
	rrs := axfr()
	if first, last := rrs[0].(*dns.SOA), rrs[len(rrs)-1].(*dns.SOA); first.Serial != 10 || last.Serial != 10 {
		t.Errorf("AXFR does not start and end with the SOA of serial 10: %v ... %v", rrs[0], rrs[len(rrs)-1])
	}
	if got := strings.Join(rrText(rrs), "\n"); !strings.Contains(got, "www.example.com. 20 IN A 192.0.2.1") ||
		!strings.Contains(got, "down.example.com. 20 IN A 192.0.2.12") {
		t.Errorf("AXFR lacks the steered records' answers:\n%s", got)
	}

	// The same content under a later index keeps its serial and sends nothing.
	if err := s.Apply(context.Background(), Config{Serial: 11, Zones: []Zone{z}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Zones()[0].Serial; got != 10 {
		t.Errorf("serial of an unchanged zone: got %d, want 10", got)
	}
	// A target going down changes what the zone answers: new serial, NOTIFY.
	z.Records[1].Targets[0].Healthy = false
	if err := s.Apply(context.Background(), Config{Serial: 12, Zones: []Zone{z}}); err != nil {
		t.Fatal(err)
	}
	waitNotify(12)

	ixfr := func(serial uint32, network string) *dns.Msg {
		m := question("example.com.", dns.TypeIXFR)
		m.Ns = []dns.RR{&dns.SOA{Hdr: hdr("example.com.", dns.TypeSOA, 0), Ns: "a.", Mbox: "b.", Serial: serial}}
		return exchange(t, s, network, m)
	}
	if r := ixfr(12, "tcp"); len(r.Answer) != 1 {
		t.Errorf("IXFR from the current serial: got %d records, want the SOA alone", len(r.Answer))
	}
	if r := ixfr(10, "udp"); len(r.Answer) != 1 {
		t.Errorf("IXFR over UDP: got %d records, want the SOA alone", len(r.Answer))
	}
	if r := ixfr(10, "tcp"); len(r.Answer) < 10 {
		t.Errorf("IXFR from an old serial over TCP: got %d records, want the whole zone", len(r.Answer))
	}

	// Anyone else is refused.
	z.Secondaries = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:9")}
	if err := s.Apply(context.Background(), Config{Serial: 13, Zones: []Zone{z}}); err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, s, "udp", question("example.com.", dns.TypeAXFR)); r.Rcode != dns.RcodeRefused {
		t.Errorf("AXFR over UDP from a non-secondary: got %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r := exchange(t, s, "tcp", question("example.com.", dns.TypeAXFR)); r.Rcode != dns.RcodeRefused {
		t.Errorf("AXFR from a non-secondary: got %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	// A NOTIFY is counted once its answer is back, which can be after the
	// secondary saw it.
	deadline := time.Now().Add(5 * time.Second)
	for st := s.Stats(); st.Transfers != 2 || st.NotifiesSent != 2; st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats: got %d transfers and %d NOTIFYs answered, want 2 and 2", st.Transfers, st.NotifiesSent)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServer_ApplyInvalidChangesNothing(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1}, Config{Zones: []Zone{testZone()}})
	cases := []struct {
		name   string
		mutate func(z *Zone)
		want   string
	}{
		{"record outside the zone", func(z *Zone) { z.Records[0].Name = "ns1.example.org." }, "not in the zone"},
		{"CNAME beside other data", func(z *Zone) { z.Records[4].Name = "www.example.com." }, "a CNAME must be the only data"},
		{"two records of one type", func(z *Zone) { z.Records[6].Name = "txt.deep.example.com." }, "both answer"},
		{"static and steered", func(z *Zone) { z.Records[0].Policy = Failover }, "either a type"},
		{"bad A value", func(z *Zone) { z.Records[0].Values = []string{"2001:db8::1"} }, "is not an A address"},
		{"unknown policy", func(z *Zone) { z.Records[1].Policy = "random" }, "is not one of"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			z := testZone()
			tc.mutate(&z)
			err := s.Apply(context.Background(), Config{Zones: []Zone{z}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply: got %v, want an error with %q", err, tc.want)
			}
			if r := exchange(t, s, "udp", question("ns1.example.com.", dns.TypeA)); len(r.Answer) != 1 {
				t.Errorf("after a refused Apply: got %d answers, want the old zone's 1", len(r.Answer))
			}
		})
	}
}

func TestServer_RecordsStatus(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1}, Config{Region: "us", Zones: []Zone{testZone()}})
	recs := s.Records()
	if st := recs["down"]; !st.FailOpen || len(st.Answers) != 1 || len(st.Answers[0].Addrs) != 2 ||
		!strings.Contains(st.Answers[0].Reason, "fail open") {
		t.Errorf("down: got %+v, want a fail-open answer of both addresses", st)
	}
	geo := recs["geo"]
	if len(geo.Answers) != 3 {
		t.Fatalf("geo: got %d answers, want one per region and one for no region", len(geo.Answers))
	}
	for _, a := range geo.Answers {
		want := map[string]int{"eu": 1, "us": 1, "": 2}[a.Region]
		if len(a.Addrs) != want {
			t.Errorf("geo answer for region %q: got %v, want %d addresses (%s)", a.Region, a.Addrs, want, a.Reason)
		}
	}
	if www := recs["www"]; len(www.Answers[0].Addrs) != 2 || !strings.Contains(www.Answers[0].Reason, "failover: priority 1") {
		t.Errorf("www: got %+v, want web-eu's two addresses at priority 1", www)
	}
}

// TestServer_Wildcard: on a wildcard address miekg/dns's UDP server
// answers (from the address each query came to).
func TestServer_Wildcard(t *testing.T) {
	s := startServer(t, Options{Addr: "0.0.0.0:0", RateLimit: -1}, Config{Zones: []Zone{testZone()}})
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	for _, addr := range []string{"127.0.0.1", "127.0.0.2"} {
		r, _, err := c.Exchange(question("ns1.example.com.", dns.TypeA), net.JoinHostPort(addr, fmt.Sprint(s.Addr().Port())))
		if err != nil || len(r.Answer) != 1 {
			t.Errorf("query to %s: got %v, %v; want one answer", addr, r, err)
		}
	}
}
