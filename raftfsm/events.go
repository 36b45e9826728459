package raftfsm

import (
	"sort"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// Event types.
const (
	EventPut    = "put"
	EventDelete = "delete"
)

// Event is one change of a user resource (load balancer, pool, certificate
// or DNS record). For a put, Resource is the stored resource; for a delete,
// it holds only metadata.name, with metadata.version set to the deleting
// index, in the oneof of its kind.
type Event struct {
	Index    uint64
	Type     string
	Resource *weftv1.Resource
}

// eventRing keeps the most recent events in log order. floor is the highest
// index for which events may be missing: every event with a greater index,
// up to top, the last index added, is in the ring.
type eventRing struct {
	buf        []Event
	start      int // position of the oldest event
	n          int
	floor, top uint64
}

func newEventRing(size int) eventRing {
	return eventRing{buf: make([]Event, size)}
}

// add records the events of the command applied at index (none, for most
// commands).
func (r *eventRing) add(index uint64, events []Event) {
	r.top = index
	for _, e := range events {
		if r.n == len(r.buf) {
			// Other events of the dropped one's index may remain, but that
			// index is no longer complete.
			r.floor = r.buf[r.start].Index
			r.buf[r.start] = Event{}
			r.start = (r.start + 1) % len(r.buf)
			r.n--
		}
		r.buf[(r.start+r.n)%len(r.buf)] = e
		r.n++
	}
}

// reset forgets every event: the state was replaced at index.
func (r *eventRing) reset(index uint64) {
	clear(r.buf)
	r.start, r.n, r.floor, r.top = 0, 0, index, index
}

func (r *eventRing) at(i int) Event { return r.buf[(r.start+i)%len(r.buf)] }

// since returns a copy of the events with Index > from, or reset when some
// of them were dropped.
func (r *eventRing) since(from uint64) (events []Event, reset bool) {
	if from >= r.top {
		return nil, false // floor <= top
	}
	events, complete := r.between(from, r.top)
	return events, !complete
}

// between returns a copy of the events with from < Index <= to, and
// whether the ring holds all of them: none was dropped, and every index up
// to to was added.
func (r *eventRing) between(from, to uint64) (events []Event, complete bool) {
	if from < r.floor || to > r.top || to < from {
		return nil, false
	}
	first := sort.Search(r.n, func(i int) bool { return r.at(i).Index > from })
	end := sort.Search(r.n, func(i int) bool { return r.at(i).Index > to })
	if first == end {
		return nil, true
	}
	events = make([]Event, 0, end-first)
	for i := first; i < end; i++ {
		events = append(events, r.at(i))
	}
	return events, true
}
