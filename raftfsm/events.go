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
// index for which events may be missing: every event with a greater index is
// in the ring.
type eventRing struct {
	buf   []Event
	start int // position of the oldest event
	n     int
	floor uint64
}

func newEventRing(size int) eventRing {
	return eventRing{buf: make([]Event, size)}
}

func (r *eventRing) add(events []Event) {
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
	r.start, r.n, r.floor = 0, 0, index
}

func (r *eventRing) at(i int) Event { return r.buf[(r.start+i)%len(r.buf)] }

// since returns a copy of the events with Index > from, or reset when some
// of them were dropped.
func (r *eventRing) since(from uint64) (events []Event, reset bool) {
	if from < r.floor {
		return nil, true
	}
	first := sort.Search(r.n, func(i int) bool { return r.at(i).Index > from })
	if first == r.n {
		return nil, false
	}
	events = make([]Event, 0, r.n-first)
	for i := first; i < r.n; i++ {
		events = append(events, r.at(i))
	}
	return events, false
}
