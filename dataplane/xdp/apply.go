package xdp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// noBackend is the table entry of a slot with no backend (NO_BACKEND).
const noBackend = 0xffffffff

// state is what Apply has written to the maps, so the next Apply can
// change only what differs.
type state struct {
	services map[serviceKey]*serviceState
	// given are the services of the last Config applied, as given (their
	// own copies), with the Config's local addresses; nil after a failed
	// Apply.
	given      []Service
	givenLocal []netip.Addr
	// keys is the array validate writes the keys of a Config's services
	// in (desired.keys), reused from one Apply to the next.
	keys []serviceKey

	backends  map[backendKey]*backendRef
	vips      map[netip.Addr]uint32 // services per VIP
	vipFilter vipFilter
	neighbors map[netip.Addr]string // MAC as written
	svcIDs    idPool
	backIDs   idPool
	tables    tableState
	// config is the lb_config written: local address counts and gateway
	// (Apply), MAC and sync (SetFlowRouting).
	config  lbLbConfig
	routing routingState
	quic    quicState
	// entriesWritten counts the Maglev table entries written (tests and
	// benchmarks read it).
	entriesWritten uint64
	// reweighed are the backends whose weighted count changed in this
	// Apply, whose BACKEND_ACTIVE flag may have to change.
	reweighed []backendKey
}

type serviceState struct {
	svc      Service    // as applied (validated)
	value    lbSvcValue // value.Table: the live table's slot
	standby  uint32     // the slot of the other table
	sig      string     // backends and weights the live table was built from
	backends []backendKey
	// pos is the service's position in given.
	pos int
}

type backendRef struct {
	id   uint32
	refs int
	// weighted counts the services in which its weight is above 0;
	// active is whether the backend takes new flows (BACKEND_ACTIVE), as
	// written: weighted > 0.
	weighted int
	active   bool
}

func newState(lim limits) state {
	return state{
		services:  map[serviceKey]*serviceState{},
		backends:  map[backendKey]*backendRef{},
		vips:      map[netip.Addr]uint32{},
		neighbors: map[netip.Addr]string{},
		svcIDs:    idPool{max: lim.services},
		backIDs:   idPool{max: lim.backends},
		tables:    tableState{slots: idPool{max: lim.tables}, busy: map[uint32]bool{}},
	}
}

// idPool hands out ids below max. It prefers ids never used to freed ones,
// and reuses freed ones oldest first, so that an id (and its counters)
// comes back as late as possible: connection-table entries of a removed
// backend still count against its id until they expire.
type idPool struct {
	next, max uint32
	free      []uint32
}

func (p *idPool) get() (uint32, bool) {
	if p.next < p.max {
		p.next++
		return p.next - 1, true
	}
	if len(p.free) == 0 {
		return 0, false
	}
	id := p.free[0]
	p.free = p.free[1:]
	return id, true
}

func (p *idPool) put(id uint32) { p.free = append(p.free, id) }

// Apply makes the maps match cfg: services added, changed and removed in
// place, without disturbing flows in the connection table. A service whose
// backends or weights changed gets its new Maglev table written into its
// standby table (only the entries that differ) and switched to with one
// update of its service entry, so no packet sees a half-written table
// (tables.go). An invalid cfg (ErrInvalidConfig) changes nothing; a failed
// map update leaves the maps partly updated, and the next Apply completes
// them.
func (d *Dataplane) Apply(ctx context.Context, cfg Config) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	want, err := validate(cfg, d.limits, &d.state)
	if err != nil {
		return err
	}
	// Until this Apply succeeds, the next one checks every service.
	prev := d.state.given
	d.state.given, d.state.givenLocal = nil, nil
	defer func() {
		if err == nil {
			d.remember(cfg, want, prev)
		}
	}()
	// The tables switched away from are written again only after a
	// grace period, which runs while nothing waits for it.
	defer d.startGrace()

	if err := d.applyNeighbors(cfg); err != nil {
		return err
	}
	if err := d.applyLocal(cfg); err != nil {
		return err
	}
	// Removed services go first, so that their tables can serve new
	// services; their backends and VIPs are released last, so that those
	// the new services share keep their ids and entries.
	var released []backendKey
	var vips []netip.Addr
	defer func() {
		d.releaseBackends(released)
		for _, a := range vips {
			if rerr := d.removeVIP(a); rerr != nil && err == nil {
				err = fmt.Errorf("apply xdp config: %w", rerr)
			}
		}
	}()
	for k, old := range d.state.services {
		if want.applied == len(d.state.services) {
			break // every service still applied is wanted (none at all, often)
		}
		if want.wants(k, old) {
			continue
		}
		if err := d.removeService(k); err != nil {
			return fmt.Errorf("remove service %s: %w", k, err)
		}
		released = append(released, old.backends...)
		vips = append(vips, k.vip)
	}
	// Only new and changed services are touched: an unchanged one costs a
	// comparison, in validate.
	if err := d.reserveTables(2 * want.added); err != nil {
		return fmt.Errorf("apply xdp config: %w", err)
	}
	slices.SortFunc(want.changed, compareServiceKeys)
	for _, k := range want.changed {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("apply xdp config: %w", err)
		}
		if err := d.applyService(k, want.services[k]); err != nil {
			return fmt.Errorf("apply service %s: %w", k, err)
		}
	}
	return d.applyActive()
}

// remember keeps what a successful Apply was given, for the next one's
// validate: copies of the services not given as before (prev), with
// their positions.
func (d *Dataplane) remember(cfg Config, want desired, prev []Service) {
	// prev's array is reused: a service given as before is at the same
	// position in it (a new array a change was a megabyte of garbage at
	// 10,000 services).
	given := slices.Grow(prev[:0], len(cfg.Services))[:len(cfg.Services)]
	clear(prev[min(len(prev), len(given)):])
	for i, s := range cfg.Services {
		if want.same[i] {
			given[i] = prev[i]
			continue
		}
		s.Backends = slices.Clone(s.Backends)
		given[i] = s
		d.state.services[want.keys[i]].pos = i
	}
	d.state.given, d.state.givenLocal = given, slices.Clone(cfg.LocalAddrs)
}

// sameService reports whether a desired service is the one applied
// (TestSameService checks that it compares every field).
func sameService(a, b Service) bool {
	return a.VIP == b.VIP && a.Port == b.Port && a.Proto == b.Proto && a.Mode == b.Mode &&
		a.Scheduler == b.Scheduler && a.NewFlowRate == b.NewFlowRate && a.Fragments == b.Fragments &&
		slices.Equal(a.Backends, b.Backends)
}

// weigh adds n to the weighted count of the backends of bs that have a
// weight above 0 (they are referenced).
func (d *Dataplane) weigh(bs []Backend, n int) {
	for _, b := range bs {
		if b.Weight == 0 {
			continue
		}
		k := backendKey{b.Addr, b.Port}
		d.state.backends[k].weighted += n
		d.state.reweighed = append(d.state.reweighed, k)
	}
}

// applyActive sets BACKEND_ACTIVE on the reweighed backends that take new
// flows in some service and clears it on the others (unhealthy or
// drained: weight 0), so a SYN reusing a tracked tuple is not sent to
// them.
func (d *Dataplane) applyActive() error {
	for len(d.state.reweighed) > 0 {
		k := d.state.reweighed[0]
		r := d.state.backends[k]
		if active := r != nil && r.weighted > 0; r != nil && r.active != active {
			flags := lbBackendFlagsBACKEND_VALID
			if active {
				flags |= lbBackendFlagsBACKEND_ACTIVE
			}
			if err := d.objs.Backends.Put(r.id, lbBackend{Addr: lbAddr(k.addr), Port: be16(k.port), Flags: flags}); err != nil {
				return fmt.Errorf("write backend %s: %w", k, err)
			}
			r.active = active
		}
		d.state.reweighed = d.state.reweighed[1:]
	}
	return nil
}

func compareServiceKeys(a, b serviceKey) int {
	if c := a.vip.Compare(b.vip); c != 0 {
		return c
	}
	if a.port != b.port {
		return int(a.port) - int(b.port)
	}
	return int(a.proto) - int(b.proto)
}

func (d *Dataplane) applyNeighbors(cfg Config) error {
	want := make(map[netip.Addr]string, len(cfg.Neighbors))
	for a, mac := range cfg.Neighbors {
		a = a.Unmap()
		want[a] = string(mac)
		if d.state.neighbors[a] == string(mac) {
			continue
		}
		var n lbNeigh
		copy(n.Mac[:], mac)
		if err := d.objs.Neighbors.Put(lbAddr(a), n); err != nil {
			return fmt.Errorf("write neighbor %v: %w", a, err)
		}
		d.state.neighbors[a] = string(mac)
		d.state.neighborsChanged()
	}
	for a := range d.state.neighbors {
		if _, ok := want[a]; ok {
			continue
		}
		if err := d.objs.Neighbors.Delete(lbAddr(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete neighbor %v: %w", a, err)
		}
		delete(d.state.neighbors, a)
		d.state.neighborsChanged()
	}
	return nil
}

// neighborsChanged moves the neighbor generation on, so that the program's
// connection entries look up their next hop again (applyLocal or
// setInterface write it). It is never 0, which entries start at.
func (st *state) neighborsChanged() {
	st.config.NeighGen++
	if st.config.NeighGen == 0 {
		st.config.NeighGen = 1
	}
}

// applyLocal writes the FullNAT local addresses and then the counts and
// gateway that make the program use them. Local addresses are few and
// rarely change, so they are simply rewritten.
func (d *Dataplane) applyLocal(cfg Config) error {
	c := d.state.config
	c.N_local4, c.N_local6, c.GwMac, c.HasGw = 0, 0, [6]uint8{}, 0
	for _, a := range cfg.LocalAddrs {
		a = a.Unmap()
		idx := c.N_local4
		if a.Is6() {
			idx = d.limits.localAddrs + c.N_local6
			c.N_local6++
		} else {
			c.N_local4++
		}
		if err := d.objs.LocalAddrs.Put(idx, lbAddr(a)); err != nil {
			return fmt.Errorf("write local address %v: %w", a, err)
		}
	}
	if len(cfg.Gateway) == 6 {
		copy(c.GwMac[:], cfg.Gateway)
		c.HasGw = 1
	}
	if c.GwMac != d.state.config.GwMac || c.HasGw != d.state.config.HasGw {
		d.state.neighborsChanged()
	}
	c.NeighGen = d.state.config.NeighGen
	if err := d.objs.Config.Put(uint32(0), c); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	d.state.config = c
	return nil
}

func (d *Dataplane) applyService(k serviceKey, s Service) error {
	st := &d.state
	old := st.services[k]

	bks := make([]backendKey, len(s.Backends))
	for i, b := range s.Backends {
		bks[i] = backendKey{b.Addr, b.Port}
	}
	// Take the new references before dropping the old ones, so a
	// backend that stays keeps its id.
	ids, err := d.acquireBackends(bks)
	if err != nil {
		return err
	}
	release := bks
	defer func() { d.releaseBackends(release) }()

	value := lbSvcValue{Mode: lbLbModeLB_MODE_FULLNAT, Sched: lbLbSchedLB_SCHED_MAGLEV}
	if s.Mode == ModeDSR {
		value.Mode = lbLbModeLB_MODE_DSR
	}
	if s.Scheduler == SchedulerSourceHash {
		value.Sched = lbLbSchedLB_SCHED_SOURCE_HASH
	}
	value.NewFlowRate = perCPURate(s.NewFlowRate, uint32(ebpf.MustPossibleCPU()))
	if s.Fragments {
		value.Flags |= lbSvcFlagsSVC_FRAGMENTS
	}
	sig := signature(s.Backends, ids)

	if old != nil {
		value.Id, value.Table = old.value.Id, old.value.Table
		standby := old.standby
		if old.sig != sig {
			// The switch to the standby table, rewritten.
			entries, err := tableEntries(s.Backends, ids, d.tableSize)
			if err != nil {
				return err
			}
			if err := d.writeTable(old.standby, entries); err != nil {
				return err
			}
			value.Table, standby = old.standby, old.value.Table
		}
		if value != old.value {
			if err := d.putService(k, value, &old.value); err != nil {
				return err
			}
		}
		if value.Table != old.value.Table {
			d.retire(old.value.Table)
		}
		d.weigh(s.Backends, 1)
		d.weigh(old.svc.Backends, -1)
		release = old.backends
		st.services[k] = &serviceState{svc: s, value: value, standby: standby, sig: sig, backends: bks}
		return nil
	}

	entries, err := tableEntries(s.Backends, ids, d.tableSize)
	if err != nil {
		return err
	}
	id, ok := st.svcIDs.get()
	if !ok {
		return errors.New("no free service id")
	}
	value.Id = id
	var slots [2]uint32
	taken := 0
	// undo gives back what this call took when it fails.
	undo := func() {
		st.tables.spare = append(st.tables.spare, slots[:taken]...)
		st.svcIDs.put(id)
	}
	for i := range slots {
		slot, err := d.takeSpare()
		if err != nil {
			undo()
			return err
		}
		slots[i] = slot
		taken++
		// Both tables start the same, so the first change writes only
		// what it changes.
		if err := d.writeTable(slot, entries); err != nil {
			undo()
			return err
		}
	}
	if err := d.zeroStats(d.objs.SvcStats, id); err != nil {
		undo()
		return err
	}
	if err := d.addVIP(k.vip); err != nil {
		undo()
		return err
	}
	value.Table = slots[0]
	if err := d.putService(k, value, nil); err != nil {
		undo()
		// The VIP count was raised for this service.
		return errors.Join(err, d.removeVIP(k.vip))
	}
	d.weigh(s.Backends, 1)
	release = nil
	st.services[k] = &serviceState{svc: s, value: value, standby: slots[1], sig: sig, backends: bks}
	return nil
}

// removeService deletes a service's entry; its tables become spares once
// no program reads them. The caller releases its backends and VIP.
func (d *Dataplane) removeService(k serviceKey) error {
	old := d.state.services[k]
	if old.value.Flags&lbSvcFlagsSVC_FRAGMENTS != 0 {
		if err := d.deleteFragmentKey(k.vip, old.value.Id); err != nil {
			return err
		}
	}
	if err := d.objs.Services.Delete(svcKey(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete service: %w", err)
	}
	if err := d.objs.SvcById.Put(old.value.Id, lbSvcEntry{}); err != nil {
		return fmt.Errorf("clear service %d: %w", old.value.Id, err)
	}
	delete(d.state.services, k)
	d.weigh(old.svc.Backends, -1)
	d.retire(old.value.Table, old.standby)
	d.state.tables.spare = append(d.state.tables.spare, old.value.Table, old.standby)
	d.state.svcIDs.put(old.value.Id)
	// An HTTP/3 port the service's key hid (a change of listeners
	// between two rounds) takes its entry back.
	if d.state.quic.ports[k] {
		return d.putQUICPort(k)
	}
	return nil
}

// perCPURate is each CPU's share of a node's new-flow rate (0:
// unlimited), rounded up so that no CPU's share is 0. The program counts
// per CPU, without atomics: with the flows of a flood spread over n CPUs
// the node opens the rate a second, with them all on one, rate/n.
func perCPURate(rate, cpus uint32) uint32 {
	if rate == 0 {
		return 0
	}
	return (rate + cpus - 1) / cpus
}

// signature describes the input of a service's Maglev table.
func signature(bs []Backend, ids []uint32) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = strconv.FormatUint(uint64(ids[i]), 10) + "/" + strconv.FormatUint(uint64(b.Weight), 10)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// writeTable makes the table in slot hold entries, once no program reads
// it.
func (d *Dataplane) writeTable(slot uint32, entries []uint32) error {
	if err := d.writable(slot); err != nil {
		return err
	}
	if err := d.fillTable(slot, entries); err != nil {
		return fmt.Errorf("write maglev table: %w", err)
	}
	return nil
}

func (d *Dataplane) acquireBackends(bks []backendKey) ([]uint32, error) {
	ids := make([]uint32, len(bks))
	for i, k := range bks {
		if r := d.state.backends[k]; r != nil {
			r.refs++
			ids[i] = r.id
			continue
		}
		id, ok := d.state.backIDs.get()
		if !ok {
			d.releaseBackends(bks[:i])
			return nil, errors.New("no free backend id")
		}
		err := d.zeroStats(d.objs.BackendStats, id)
		if err == nil {
			err = d.objs.Backends.Put(id, lbBackend{Addr: lbAddr(k.addr), Port: be16(k.port), Flags: lbBackendFlagsBACKEND_VALID})
		}
		if err != nil {
			d.state.backIDs.put(id)
			d.releaseBackends(bks[:i])
			return nil, fmt.Errorf("write backend %s: %w", k, err)
		}
		d.state.backends[k] = &backendRef{id: id, refs: 1}
		ids[i] = id
	}
	return ids, nil
}

// releaseBackends drops references; a backend no service uses is marked
// invalid and its id freed. Flows in the connection table keep going to
// it: their entries hold its address.
func (d *Dataplane) releaseBackends(bks []backendKey) {
	for _, k := range bks {
		r := d.state.backends[k]
		if r == nil {
			continue
		}
		if r.refs--; r.refs > 0 {
			continue
		}
		if err := d.objs.Backends.Put(r.id, lbBackend{}); err != nil {
			d.log.Warn("clear backend", "backend", k.String(), "error", err)
		}
		delete(d.state.backends, k)
		d.state.backIDs.put(r.id)
	}
}

// putService writes service k's configuration v where the program finds
// it: by id in svc_by_id (for packets of tracked flows), then by key in
// services, and for a service that forwards fragments under its VIP's
// fragment key too. was is what it replaces, nil for a new service; if
// services cannot be written, svc_by_id is put back as it was, since a
// tracked flow's packet would otherwise see a table that is about to be
// freed.
func (d *Dataplane) putService(k serviceKey, v lbSvcValue, was *lbSvcValue) error {
	if err := d.objs.SvcById.Put(v.Id, lbSvcEntry{Key: svcKey(k), Value: v}); err != nil {
		return fmt.Errorf("write service %d: %w", v.Id, err)
	}
	err := d.objs.Services.Put(svcKey(k), v)
	if err == nil {
		return d.putFragmentKey(k, v, was)
	}
	err = fmt.Errorf("write service: %w", err)
	back := lbSvcEntry{}
	if was != nil {
		back = lbSvcEntry{Key: svcKey(k), Value: *was}
	}
	if rerr := d.objs.SvcById.Put(v.Id, back); rerr != nil {
		err = errors.Join(err, fmt.Errorf("restore service %d: %w", v.Id, rerr))
	}
	return err
}

// fragmentKey is where the program finds the service that forwards the
// fragments of VIP a: under port 0, since a fragment but the first has
// no ports.
func fragmentKey(a netip.Addr) lbSvcKey {
	return svcKey(serviceKey{vip: a, proto: protoUDP})
}

// putFragmentKey writes service k's configuration v under its VIP's
// fragment key if it forwards fragments, and deletes what was there if
// it no longer does.
func (d *Dataplane) putFragmentKey(k serviceKey, v lbSvcValue, was *lbSvcValue) error {
	switch {
	case v.Flags&lbSvcFlagsSVC_FRAGMENTS != 0:
		if err := d.objs.Services.Put(fragmentKey(k.vip), v); err != nil {
			return fmt.Errorf("write fragment service of %v: %w", k.vip, err)
		}
	case was != nil && was.Flags&lbSvcFlagsSVC_FRAGMENTS != 0:
		return d.deleteFragmentKey(k.vip, v.Id)
	}
	return nil
}

// deleteFragmentKey deletes VIP a's fragment key if service id holds it:
// within one Apply another service of the VIP may have taken it over.
func (d *Dataplane) deleteFragmentKey(a netip.Addr, id uint32) error {
	var v lbSvcValue
	if err := d.objs.Services.Lookup(fragmentKey(a), &v); err != nil || v.Id != id {
		return nil
	}
	if err := d.objs.Services.Delete(fragmentKey(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete fragment service of %v: %w", a, err)
	}
	return nil
}

// vipFilter mirrors the program's vip_filter: a bit per vipBit, set while
// a VIP has it, and how many VIPs have each bit.
type vipFilter struct {
	words map[uint32]uint64 // by index, those not zero
	vips  map[uint32]int
}

// vipBit is the bit of VIP a in vip_filter, as the program computes it
// (vip_bit): a hash of the address's words as they lie in memory.
func vipBit(a netip.Addr) uint32 {
	x := lbAddr(a).A
	return ((x[0] ^ x[1] ^ x[2] ^ x[3]) * 0x9e3779b1) >> 16
}

// setVIPBit counts one more (delta 1) or one fewer (-1) VIP on a's bit
// and writes its word if the bit changed.
func (d *Dataplane) setVIPBit(a netip.Addr, delta int) error {
	f := &d.state.vipFilter
	if f.vips == nil {
		f.words, f.vips = map[uint32]uint64{}, map[uint32]int{}
	}
	bit := vipBit(a)
	n := f.vips[bit] + delta
	if n > 0 && n-delta > 0 {
		f.vips[bit] = n
		return nil
	}
	word := f.words[bit/64] ^ 1<<(bit%64)
	if err := d.objs.VipFilter.Put(bit/64, word); err != nil {
		return fmt.Errorf("write vip filter for %v: %w", a, err)
	}
	if word != 0 {
		f.words[bit/64] = word
	} else {
		delete(f.words, bit/64)
	}
	if n > 0 {
		f.vips[bit] = n
	} else {
		delete(f.vips, bit)
	}
	return nil
}

// addVIP counts one more service on VIP a. A new VIP's filter bit is set
// before its first service is written, so no packet of it is passed by.
func (d *Dataplane) addVIP(a netip.Addr) error {
	n := d.state.vips[a] + 1
	if n == 1 {
		if err := d.setVIPBit(a, 1); err != nil {
			return err
		}
	}
	if err := d.objs.Vips.Put(lbAddr(a), n); err != nil {
		err = fmt.Errorf("write vip %v: %w", a, err)
		if n == 1 {
			err = errors.Join(err, d.setVIPBit(a, -1))
		}
		return err
	}
	d.state.vips[a] = n
	return nil
}

func (d *Dataplane) removeVIP(a netip.Addr) error {
	n := d.state.vips[a] - 1
	if n == 0 {
		delete(d.state.vips, a)
		if err := d.objs.Vips.Delete(lbAddr(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete vip %v: %w", a, err)
		}
		return d.setVIPBit(a, -1)
	}
	d.state.vips[a] = n
	if err := d.objs.Vips.Put(lbAddr(a), n); err != nil {
		return fmt.Errorf("write vip %v: %w", a, err)
	}
	return nil
}

func (d *Dataplane) zeroStats(m *ebpf.Map, id uint32) error {
	if err := m.Put(id, make([]lbLbStats, ebpf.MustPossibleCPU())); err != nil {
		return fmt.Errorf("zero counters %d: %w", id, err)
	}
	return nil
}

func svcKey(k serviceKey) lbSvcKey {
	return lbSvcKey{Vip: lbAddr(k.vip), Port: be16(k.port), Proto: k.proto}
}

// lbAddr stores a in network order, IPv4 addresses IPv4-mapped.
func lbAddr(a netip.Addr) lbLbAddr {
	b := a.As16()
	var x lbLbAddr
	for i := range x.A {
		x.A[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return x
}

// be16 returns v in network order, as a __be16 field holds it.
func be16(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
