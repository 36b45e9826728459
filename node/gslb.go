package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/weftlb/weft/bgp"
	"github.com/weftlb/weft/gossip"
	"github.com/weftlb/weft/gslb"
	"github.com/weftlb/weft/health"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/validate"
)

// dnsHealthPrefix names the health pools of DNS records' address targets
// ("dnsrecord/<name>"): pool names are DNS labels, so none collides.
const dnsHealthPrefix = "dnsrecord/"

// Gossip metadata address roles the GSLB reads: "bgp" is set by nodes that
// announce VIPs (their router id), "dns" by nodes that answer DNS.
const (
	metaAddrBGP = "bgp"
	metaAddrDNS = "dns"
)

// speaker is a node that announces VIPs over BGP, as gossip shows it.
type speaker struct {
	name, zone string
	draining   bool
}

// gslbInputs are the observations, beside the committed state, that decide
// whether a target is healthy.
type gslbInputs struct {
	// healthy is the agreed view of pool members.
	healthy Healthy
	// view is the agreed view of address targets (nil: no health checks
	// run here, and every address target counts as healthy).
	view map[health.MemberKey]bool
	// speakers are the live nodes that announce VIPs over BGP; with none,
	// VIPs reach the nodes some other way and backend health decides.
	speakers []speaker
	// region is the answering node's region (nearest).
	region string
}

// recordNote is what the status of a record says beside the server's
// answer: why it is not served, and why each target is or is not healthy.
type recordNote struct {
	zone    string
	skipped string
	targets []*weftv1.DNSTargetStatus
}

// gslbConfig turns the committed DNS records into the DNS server's Config.
// Zones are the records with spec.zone; every other record joins the zone
// with the longest apex above it. A record that no zone holds, or that
// clashes with an older record (by creation, then name) at the same name
// and type, is left out and its note says why: one bad record never stops
// the others, and a new one never displaces what is served.
func gslbConfig(st *raftfsm.State, in gslbInputs) (gslb.Config, map[string]*recordNote) {
	cfg := gslb.Config{Region: in.region, Serial: uint32(st.Index())}
	notes := map[string]*recordNote{}
	records := st.DNSRecords()
	slices.SortFunc(records, func(a, b *weftv1.DNSRecord) int {
		return cmp.Or(cmp.Compare(a.GetMetadata().GetCreateIndex(), b.GetMetadata().GetCreateIndex()),
			strings.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()))
	})
	zoneOf := map[string]int{}
	for _, r := range records {
		if z := r.GetSpec().GetZone(); z != nil {
			zoneOf[r.GetSpec().GetFqdn()] = len(cfg.Zones)
			cfg.Zones = append(cfg.Zones, zoneConfig(r.GetSpec().GetFqdn(), z))
		}
	}
	announced := announcedVIPs(st, in)
	taken := claims{}
	for apex := range zoneOf {
		taken[apex] = map[string]string{"SOA": "apex"}
	}
	for _, r := range records {
		name, s := r.GetMetadata().GetName(), r.GetSpec()
		note := &recordNote{}
		notes[name] = note
		zi, ok := -1, false
		for n := s.GetFqdn(); n != "" && !ok; n = parentName(n) {
			zi, ok = zoneOf[n]
		}
		if !ok {
			note.skipped = fmt.Sprintf("%s is in no zone of the committed state (no DNS record with spec.zone at or above it)", s.GetFqdn())
			continue
		}
		z := &cfg.Zones[zi]
		note.zone = z.Name
		rec := gslb.Record{Name: s.GetFqdn(), Source: name, TTL: s.GetTtl(), Type: gslb.TypeOf(s.GetType()),
			Values: s.GetValues(), Policy: gslb.Policy(s.GetPolicy()), MaxAnswers: int(s.GetMaxAnswers())}
		if rec.Type == 0 && rec.Policy == "" {
			continue // a zone apex with no data of its own
		}
		for _, t := range s.GetTargets() {
			target, ts := dnsTarget(st, name, s, t, in, announced)
			note.targets = append(note.targets, ts)
			if target.Addr.IsValid() {
				rec.Targets = append(rec.Targets, target)
			}
		}
		if rec.Policy != "" && len(rec.Targets) == 0 {
			note.skipped = "no target has an address (every load balancer it names is missing)"
			continue
		}
		if problem := taken.claim(rec); problem != "" {
			note.skipped = problem
			continue
		}
		z.Records = append(z.Records, rec)
	}
	return cfg, notes
}

// claims tracks what each name answers: record type -> DNS record.
type claims map[string]map[string]string

// claim records what rec answers, or says why it cannot: a type at a name
// is answered by one record, and a CNAME is the only data at its name
// (and never at an apex, which has the SOA and NS).
func (c claims) claim(rec gslb.Record) string {
	types := []string{"A", "AAAA"}
	if rec.Type != 0 {
		types = []string{typeName(rec.Type)}
	}
	have := c[rec.Name]
	if other := have["CNAME"]; other != "" {
		return fmt.Sprintf("dns record %s is a CNAME at %s, which must be the only data there", other, rec.Name)
	}
	if types[0] == "CNAME" && len(have) > 0 {
		return fmt.Sprintf("a CNAME must be the only data at %s, and %s has data there", rec.Name, slices.Sorted(maps.Values(have))[0])
	}
	for _, t := range types {
		if other := have[t]; other != "" {
			return fmt.Sprintf("dns record %s already answers %s %s", other, t, rec.Name)
		}
	}
	if have == nil {
		have = map[string]string{}
		c[rec.Name] = have
	}
	for _, t := range types {
		have[t] = rec.Source
	}
	return ""
}

func typeName(t uint16) string {
	for _, n := range []string{"A", "AAAA", "CNAME", "TXT"} {
		if gslb.TypeOf(n) == t {
			return n
		}
	}
	return fmt.Sprint(t)
}

// parentName is the name one label up ("b.c." for "a.b.c."), "" above the
// top level.
func parentName(n string) string {
	i := strings.IndexByte(n, '.')
	if i < 0 || i == len(n)-1 {
		return ""
	}
	return n[i+1:]
}

func zoneConfig(apex string, z *weftv1.DNSZone) gslb.Zone {
	out := gslb.Zone{Name: apex, PrimaryNS: z.GetPrimaryNs(), Hostmaster: z.GetHostmaster(), Nameservers: z.GetNameservers(),
		Refresh: z.GetRefresh(), Retry: z.GetRetry(), Expire: z.GetExpire(), NegativeTTL: z.GetNegativeTtl()}
	for _, s := range z.GetSecondaries() {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out.Secondaries = append(out.Secondaries, ap)
		}
	}
	for _, r := range z.GetRegions() {
		reg := gslb.Region{Name: r.GetName()}
		for _, c := range r.GetCidrs() {
			if p, err := netip.ParsePrefix(c); err == nil {
				reg.Prefixes = append(reg.Prefixes, p)
			}
		}
		out.Regions = append(out.Regions, reg)
	}
	return out
}

// dnsTarget resolves one target: a load balancer's VIP, healthy when some
// node announces it (when any node announces VIPs at all) and a member of
// its pools may take flows in the agreed view; or an address, healthy by
// its own checks when the record has a health check.
func dnsTarget(st *raftfsm.State, record string, s *weftv1.DNSRecordSpec, t *weftv1.DNSTarget, in gslbInputs,
	announced map[netip.Addr][]string,
) (gslb.Target, *weftv1.DNSTargetStatus) {
	out := gslb.Target{Weight: t.GetWeight(), Priority: t.GetPriority(), Region: t.GetRegion()}
	ts := &weftv1.DNSTargetStatus{Region: t.GetRegion()}
	if name := t.GetLoadBalancer(); name != "" {
		out.Name, ts.Target = name, name
		lb := st.LoadBalancer(name)
		if lb == nil {
			ts.Reason = "load balancer " + name + " does not exist"
			return gslb.Target{}, ts
		}
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			ts.Reason = "load balancer " + name + " has no valid VIP"
			return gslb.Target{}, ts
		}
		out.Addr = vip
		out.Region = cmp.Or(out.Region, lb.GetSpec().GetRegion())
		ts.Address, ts.Region = vip.String(), out.Region
		switch by := announced[vip]; {
		case !servable(st.Pool, lb.GetSpec().GetListeners(), in.healthy):
			ts.Reason = "no member of its pools is healthy in the agreed view"
		case len(in.speakers) > 0 && len(by) == 0:
			ts.Reason = "its VIP is announced by no node"
		case len(in.speakers) > 0:
			out.Healthy, ts.Reason = true, "a member is healthy; VIP announced by "+strings.Join(by, ", ")
		default:
			out.Healthy, ts.Reason = true, "a member is healthy (no node announces VIPs over BGP)"
		}
		ts.Healthy = out.Healthy
		return out, ts
	}
	a := netip.MustParseAddr(t.GetAddress()) // validated
	out.Name, out.Addr, ts.Target, ts.Address = a.String(), a, a.String(), a.String()
	hc := s.GetHealthCheck()
	up, known := in.view[health.MemberKey{Pool: dnsHealthPrefix + record, Addr: netip.AddrPortFrom(a, uint16(hc.GetPort()))}]
	switch {
	case hc == nil:
		out.Healthy, ts.Reason = true, "no health check: counted healthy"
	case in.view == nil || !known:
		out.Healthy, ts.Reason = true, "not checked yet: counted healthy"
	case up:
		out.Healthy, ts.Reason = true, fmt.Sprintf("up in the agreed view (%s check on port %d)", hc.GetType(), hc.GetPort())
	default:
		ts.Reason = fmt.Sprintf("down in the agreed view (%s check on port %d)", hc.GetType(), hc.GetPort())
	}
	ts.Healthy = out.Healthy
	return out, ts
}

// announcedVIPs lists, per VIP, the live nodes that announce it: the
// announcements each speaker derives from the same state and agreed view
// (DESIGN.md principle 5), so every node reaches the same verdict.
func announcedVIPs(st *raftfsm.State, in gslbInputs) map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for _, sp := range in.speakers {
		if sp.draining {
			continue
		}
		for _, a := range announcements(st, sp.name, sp.zone, 1, in.healthy) {
			out[a.Prefix.Addr()] = append(out[a.Prefix.Addr()], sp.name)
		}
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}

// dnsHealthPools are the health pools of the DNS records' address targets
// that have a health check: each record's addresses are probed from
// several nodes with rise and fall, as pool members are.
func dnsHealthPools(st *raftfsm.State) []health.Pool {
	var out []health.Pool
	for _, r := range st.DNSRecords() {
		hc := r.GetSpec().GetHealthCheck()
		if hc == nil {
			continue
		}
		p := health.Pool{Name: dnsHealthPrefix + r.GetMetadata().GetName(), Check: checkSpec(hc)}
		for _, t := range r.GetSpec().GetTargets() {
			if a, err := netip.ParseAddr(t.GetAddress()); err == nil {
				p.Members = append(p.Members, health.Member{Addr: netip.AddrPortFrom(a, uint16(hc.GetPort()))})
			}
		}
		out = append(out, p)
	}
	return out
}

// gslbSubsystem keeps the node's DNS server in line with the committed
// records and the observed health of their targets.
type gslbSubsystem struct {
	server *gslb.Server
	region string
	inputs func() gslbInputs
	// anycast is set with --dns-anycast: announce is the address the bgp
	// subsystem announces, vips its local route when no l7 subsystem
	// keeps it.
	anycast  bool
	announce netip.Addr
	vips     *localVIPs

	mu    sync.Mutex
	last  *gslb.Config
	notes map[string]*recordNote
	err   error
}

func (g *gslbSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	if g.vips != nil {
		if err := g.vips.set([]netip.Addr{g.announce}); err != nil {
			return err
		}
	}
	in := g.inputs()
	in.region = g.region
	cfg, notes := gslbConfig(st, in)
	g.mu.Lock()
	g.notes = notes
	last := g.last
	g.mu.Unlock()
	// Serials come from the state index: a change of index alone is no
	// change of the zones.
	if last != nil {
		prev := *last
		prev.Serial = cfg.Serial
		if reflect.DeepEqual(prev, cfg) {
			return nil
		}
	}
	err := g.server.Apply(ctx, cfg)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	g.last = &cfg
	return nil
}

// records is each DNS record's status for reads: the server's answer and
// the reasons beside it.
func (g *gslbSubsystem) records(observer string) map[string]*weftv1.DNSRecordStatus {
	g.mu.Lock()
	notes := g.notes
	g.mu.Unlock()
	served := g.server.Records()
	out := map[string]*weftv1.DNSRecordStatus{}
	for name, n := range notes {
		st := &weftv1.DNSRecordStatus{Observer: observer, Zone: n.zone, Targets: n.targets}
		out[name] = st
		if n.skipped != "" {
			st.Reason = "not served: " + n.skipped
			continue
		}
		st.Served = true
		r, ok := served[name]
		if !ok {
			st.Reason = "zone apex: SOA and NS"
			continue
		}
		st.FailOpen = r.FailOpen
		var reasons []string
		for _, a := range r.Answers {
			da := &weftv1.DNSAnswer{Region: a.Region, Reason: a.Reason, FailOpen: a.FailOpen}
			for _, addr := range a.Addrs {
				da.Addresses = append(da.Addresses, addr.String())
			}
			st.Answers = append(st.Answers, da)
			reasons = append(reasons, a.Reason)
		}
		st.Reason = strings.Join(reasons, "; ")
	}
	return out
}

// status is the DNS server's part of Status.
func (g *gslbSubsystem) status(records map[string]*weftv1.DNSRecordStatus) *weftv1.DNSStatus {
	s := g.server.Stats()
	out := &weftv1.DNSStatus{Address: g.server.Addr().String(), Queries: map[string]uint64{"udp": s.UDPQueries, "tcp": s.TCPQueries},
		Responses: s.Responses, Truncated: s.Truncated, RateLimited: s.RateLimited, Slipped: s.Slipped, FailOpen: s.FailOpen,
		Transfers: s.Transfers, NotifiesSent: s.NotifiesSent, Announced: g.anycast}
	for _, z := range g.server.Zones() {
		out.Zones = append(out.Zones, &weftv1.DNSZoneStatus{Name: z.Name, Serial: z.Serial, Records: uint32(z.Records)})
	}
	for name, r := range records {
		if r.GetFailOpen() {
			out.FailOpenRecords = append(out.FailOpenRecords, name)
		}
	}
	slices.Sort(out.FailOpenRecords)
	g.mu.Lock()
	if g.err != nil {
		out.Error = g.err.Error()
	}
	g.mu.Unlock()
	return out
}

// dnsAnnouncement is the anycast DNS address's route: announced like a
// VIP, from every zone, while the node is not draining.
func dnsAnnouncement(addr netip.Addr) bgp.Announcement {
	return bgp.Announcement{Prefix: netip.PrefixFrom(addr, addr.BitLen())}
}

// query answers `weft dns query`: the server's answer to the question as
// it would answer it from client (with ECS subnet, when set), and why.
func (g *gslbSubsystem) query(req *weftv1.QueryDNSRequest) (*weftv1.QueryDNSResponse, error) {
	fail := func(field, format string, args ...any) error {
		return &validate.FieldError{Kind: "dns query", Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	if _, ok := dns.IsDomainName(req.GetName()); !ok || req.GetName() == "" {
		return nil, fail("name", "%q is not a domain name", req.GetName())
	}
	qtype := dns.TypeA
	if t := req.GetType(); t != "" {
		if qtype = dns.StringToType[strings.ToUpper(t)]; qtype == 0 {
			return nil, fail("type", "%q is not a DNS record type", t)
		}
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(req.GetName()), qtype)
	m.SetEdns0(gslb.MaxUDPSize, false)
	if s := req.GetSubnet(); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fail("subnet", "%q is not a prefix such as 203.0.113.0/24", s)
		}
		p = p.Masked()
		family := uint16(1)
		if p.Addr().Is6() {
			family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family,
			SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	}
	var client netip.Addr
	if c := req.GetClient(); c != "" {
		a, err := netip.ParseAddr(c)
		if err != nil {
			return nil, fail("client", "%q is not an IP address", c)
		}
		client = a
	}
	r, why := g.server.Query(m, client)
	out := &weftv1.QueryDNSResponse{Rcode: dns.RcodeToString[r.Rcode], Authoritative: r.Authoritative,
		Scope: uint32(why.Scope), Reason: why.Reason, FailOpen: why.FailOpen}
	for _, sec := range []struct {
		rrs []dns.RR
		to  *[]string
	}{{r.Answer, &out.Answer}, {r.Ns, &out.Authority}, {r.Extra, &out.Additional}} {
		for _, rr := range sec.rrs {
			if rr.Header().Rrtype != dns.TypeOPT {
				*sec.to = append(*sec.to, strings.ReplaceAll(rr.String(), "\t", " "))
			}
		}
	}
	return out, nil
}

// startGSLB starts the DNS server and its subsystem (--dns-addr). With
// --dns-anycast the address is made local (by the l7 subsystem's local
// routes when there is one, else by the subsystem's own) and the bgp
// subsystem, started after it, announces it.
func (a *Agent) startGSLB(healthy Healthy) error {
	srv, err := gslb.New(gslb.Options{Addr: a.cfg.DNSAddr, RateLimit: a.cfg.DNSRateLimit, Logger: a.cfg.Logger})
	if err != nil {
		return err
	}
	g := &gslbSubsystem{server: srv, region: a.id.Region, anycast: a.cfg.DNSAnycast}
	a.dns = g
	g.inputs = func() gslbInputs {
		in := gslbInputs{healthy: healthy, speakers: a.gossip.speakers(a.cfg.BGP.ASN != 0)}
		if a.health != nil {
			in.view = a.health.View()
		}
		return in
	}
	if a.cfg.DNSAnycast {
		addr, err := a.cfg.dnsAnycastAddr()
		if err != nil {
			return err
		}
		g.announce = addr
		if a.l7 != nil {
			a.l7.extraVIPs = []netip.Addr{addr}
		} else {
			if a.nl == nil {
				if a.nl, err = netlink.NewHandle(); err != nil {
					return fmt.Errorf("netlink: %w", err)
				}
			}
			g.vips = &localVIPs{nl: a.nl}
		}
	}
	a.rec.subs = append(a.rec.subs, &subsystem{name: "dns", apply: g.apply})
	return nil
}

// dnsAnnouncements are the routes the bgp subsystem adds for the DNS
// server: the anycast address, or none.
func (a *Agent) dnsAnnouncements() []bgp.Announcement {
	if a.dns == nil || !a.dns.announce.IsValid() {
		return nil
	}
	return []bgp.Announcement{dnsAnnouncement(a.dns.announce)}
}

// close stops the DNS server and removes the anycast address's route.
func (g *gslbSubsystem) close() error {
	err := g.server.Close()
	if g.vips != nil {
		err = errors.Join(err, g.vips.set(nil))
	}
	return err
}

// speakers are the live nodes announcing VIPs over BGP (those whose
// gossip metadata has a "bgp" address); self, when it speaks BGP, is one
// whatever gossip says.
func (s *gossipSubsystem) speakers(self bool) []speaker {
	var out []speaker
	if self {
		out = append(out, speaker{name: s.cfg.NodeName, zone: s.cfg.Meta.Zone})
	}
	g := s.gossiper()
	if g == nil {
		return out
	}
	for _, m := range g.Members() {
		if m.Name != s.cfg.NodeName && m.State == gossip.StateAlive && m.Meta.Addrs[metaAddrBGP] != "" {
			out = append(out, speaker{name: m.Name, zone: m.Meta.Zone, draining: m.Meta.Draining})
		}
	}
	return out
}

// metaAddrs are the addresses this node's gossip metadata names by role:
// the GSLB learns from them which nodes announce VIPs and answer DNS.
func (a *Agent) metaAddrs() map[string]string {
	addrs := map[string]string{"api": a.id.APIAdvertise, "raft": a.id.RaftAdvertise}
	if a.cfg.BGP.ASN != 0 {
		addrs[metaAddrBGP] = a.cfg.BGP.RouterID.String()
		if !a.cfg.BGP.RouterID.IsValid() {
			addrs[metaAddrBGP] = a.id.RaftAdvertise
		}
	}
	if a.cfg.DNSAddr != "" {
		addrs[metaAddrDNS] = a.cfg.DNSAddr
	}
	return addrs
}

// dnsQuery is the API's QueryDNS for this node: nil without a DNS server.
func (a *Agent) dnsQuery() func(*weftv1.QueryDNSRequest) (*weftv1.QueryDNSResponse, error) {
	if a.cfg.DNSAddr == "" {
		return nil
	}
	return func(req *weftv1.QueryDNSRequest) (*weftv1.QueryDNSResponse, error) {
		select {
		case <-a.started:
		default:
			return nil, errors.New("the node is still starting")
		}
		return a.dns.query(req)
	}
}
