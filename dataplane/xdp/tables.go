package xdp

// Maglev tables: each service has two table slots in maglev_tables, the
// live one its services entry names and a standby. A change writes the
// entries of the new table that differ from what the standby holds, then
// names the standby in the services entry (one hash-map update: a packet
// reads either table whole, never one half-written), and the table left
// becomes the standby. A table no service names may still be read by a
// program that looked its service up before the switch, so it is written
// again only after a grace period: the kernel's wait for running programs
// that follows any successful update of a map-in-map (maybe_wait_bpf_programs,
// one synchronize_rcu, 5-20 ms here), done in the background after each Apply
// and waited for only by a later Apply that writes such a table.

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/dataplane/maglev"
)

// tableState is what Apply knows of the table slots.
type tableState struct {
	slots idPool   // slots that never held a table
	spare []uint32 // slots holding a table no service uses, reused first
	// busy holds the slots a program may still read though no service
	// names them; uncovered are those of busy that no grace period started
	// after them covers.
	busy      map[uint32]bool
	uncovered []uint32
	grace     *grace // the latest grace period started, until awaited
}

// grace is a wait for the programs running when it started, in the
// background; once done without error, no program reads a table in slots.
type grace struct {
	done  chan struct{}
	slots []uint32
	err   error
}

// waitPrograms returns once every program running when it was called has
// finished: it stores slot's own table in slot again, an update of the
// map-in-map after which the kernel waits for running programs.
func (d *Dataplane) waitPrograms(slot uint32) error {
	var ring *ebpf.Map
	if err := d.objs.MaglevTables.Lookup(slot, &ring); err != nil {
		return fmt.Errorf("wait for running programs: read table slot %d: %w", slot, err)
	}
	defer ring.Close()
	if err := d.objs.MaglevTables.Put(slot, ring); err != nil {
		return fmt.Errorf("wait for running programs: %w", err)
	}
	return nil
}

// startGrace starts a grace period covering every busy slot, after the
// one already running (so only one wait runs at a time).
func (d *Dataplane) startGrace() {
	ts := &d.state.tables
	if len(ts.uncovered) == 0 {
		return
	}
	g := &grace{done: make(chan struct{}), slots: ts.uncovered}
	prev := ts.grace
	if prev != nil {
		g.slots = append(g.slots, prev.slots...)
	}
	ts.uncovered = nil
	ts.grace = g
	slot := g.slots[0]
	go func() {
		defer close(g.done)
		if prev != nil {
			<-prev.done
		}
		g.err = d.waitPrograms(slot)
	}()
}

// awaitGrace waits for the grace period in the background, if any, and
// frees the slots it covered.
func (d *Dataplane) awaitGrace() {
	ts := &d.state.tables
	g := ts.grace
	if g == nil {
		return
	}
	<-g.done
	ts.grace = nil
	if g.err != nil {
		// The slots stay busy and are covered again by the next wait.
		d.log.Warn("xdp table grace period", "error", g.err)
		ts.uncovered = append(ts.uncovered, g.slots...)
		return
	}
	for _, s := range g.slots {
		delete(ts.busy, s)
	}
}

// writable returns once no program can be reading slot's table, waiting
// for the background grace period or, when it does not cover slot, for a
// new one.
func (d *Dataplane) writable(slot uint32) error {
	ts := &d.state.tables
	if !ts.busy[slot] {
		return nil
	}
	d.awaitGrace()
	if !ts.busy[slot] {
		return nil
	}
	if err := d.waitPrograms(slot); err != nil {
		return err
	}
	// Every busy slot became busy before this wait.
	clear(ts.busy)
	ts.uncovered = nil
	return nil
}

// retire marks slots that a service named until now busy.
func (d *Dataplane) retire(slots ...uint32) {
	ts := &d.state.tables
	for _, s := range slots {
		if !ts.busy[s] {
			ts.busy[s] = true
			ts.uncovered = append(ts.uncovered, s)
		}
	}
}

// reserveTables makes sure n spare tables are there for new services
// (busy ones included: writable waits for them): it creates the missing
// ones and stores them in maglev_tables with one
// batch update per registerBatch tables (each costs a grace period).
func (d *Dataplane) reserveTables(n int) error {
	ts := &d.state.tables
	need := n - len(ts.spare)
	for need > 0 {
		batch := min(need, registerBatch)
		slots := make([]uint32, 0, batch)
		fds := make([]uint32, 0, batch)
		rings := make([]*ebpf.Map, 0, batch)
		release := func() {
			for _, r := range rings {
				r.Close()
			}
		}
		for range batch {
			slot, ok := ts.slots.get()
			if !ok {
				break
			}
			ring, err := ebpf.NewMap(d.ringSpec)
			if err != nil {
				ts.slots.put(slot)
				release()
				for _, s := range slots {
					ts.slots.put(s)
				}
				return fmt.Errorf("create maglev table: %w", err)
			}
			slots = append(slots, slot)
			fds = append(fds, uint32(ring.FD()))
			rings = append(rings, ring)
		}
		if len(slots) == 0 {
			return errors.New("no free maglev table slot")
		}
		// maglev_tables holds its own references; the descriptors are
		// closed (a node at 10,000 services would hold 20,000 of them).
		_, err := d.objs.MaglevTables.BatchUpdate(slots, fds, nil)
		release()
		if err != nil {
			for _, s := range slots {
				ts.slots.put(s)
			}
			return fmt.Errorf("store maglev tables: %w", err)
		}
		ts.spare = append(ts.spare, slots...)
		need -= len(slots)
	}
	return nil
}

// registerBatch bounds the table descriptors open at once.
const registerBatch = 256

// takeSpare returns a spare table slot, one no program reads if there is
// one. reserveTables has made sure there is a spare.
func (d *Dataplane) takeSpare() (uint32, error) {
	ts := &d.state.tables
	if len(ts.spare) == 0 {
		return 0, errors.New("no free maglev table slot")
	}
	i := len(ts.spare) - 1
	for j := i; j >= 0; j-- {
		if !ts.busy[ts.spare[j]] {
			i = j
			break
		}
	}
	slot := ts.spare[i]
	ts.spare = append(ts.spare[:i], ts.spare[i+1:]...)
	return slot, nil
}

// tableEntries builds the Maglev table of bs, whose backend ids are ids,
// as the map holds it: a backend id per entry, noBackend where none.
func tableEntries(bs []Backend, ids []uint32, m uint32) ([]uint32, error) {
	mbs := make([]maglev.Backend, len(bs))
	idOf := make(map[string]uint32, len(bs))
	for i, b := range bs {
		// The ID seeds the permutation: the address and port, the same on
		// every node (and in the userspace driver) whatever ids it
		// allocated.
		id := b.ID()
		mbs[i] = maglev.Backend{ID: id, Weight: b.Weight}
		idOf[id] = ids[i]
	}
	t, err := maglev.Build(mbs, m)
	if err != nil {
		return nil, fmt.Errorf("build maglev table: %w", err)
	}
	// The backends' ids in the table's order, so an entry is two loads.
	byIndex := make([]uint32, len(t.Backends))
	for i, b := range t.Backends {
		byIndex[i] = idOf[b.ID]
	}
	out := make([]uint32, len(t.Entries))
	for i, e := range t.Entries {
		out[i] = noBackend
		if e != maglev.NoBackend {
			out[i] = byIndex[e]
		}
	}
	return out, nil
}

// fillTable makes the table in slot hold entries, writing only the
// entries that differ, through a mapping of its memory (the tables are
// BPF_F_MMAPABLE arrays: no syscall per entry). No program may be reading
// it.
func (d *Dataplane) fillTable(slot uint32, entries []uint32) error {
	var ring *ebpf.Map
	if err := d.objs.MaglevTables.Lookup(slot, &ring); err != nil {
		return fmt.Errorf("read maglev table slot %d: %w", slot, err)
	}
	defer ring.Close()
	// An array's elements are 8-byte aligned: entry i is the first
	// uint32 of the i-th 8 bytes. The mapping is page-aligned.
	mem, err := unix.Mmap(ring.FD(), 0, 8*len(entries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("map maglev table slot %d: %w", slot, err)
	}
	cur := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(mem))), 2*len(entries))
	n := 0
	for i, e := range entries {
		if cur[2*i] != e {
			cur[2*i] = e
			n++
		}
	}
	d.state.entriesWritten += uint64(n)
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("unmap maglev table slot %d: %w", slot, err)
	}
	return nil
}
