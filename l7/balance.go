package l7

// Balancers. Each pool compiles one at Apply; picks run lock-free against
// the compiled (immutable) member list plus per-member atomic state that
// survives Apply.

import (
	"container/heap"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"
)

// member is one member of a compiled pool.
type member struct {
	addr     netip.AddrPort
	hostport string
	weight   uint32
	healthy  bool
	drain    bool
	// stickyID is the signed cookie value naming this member.
	stickyID string
	// setCookie is the full Set-Cookie value pinning a client here.
	setCookie string
	st        *memberState
}

// memberState is what a member carries across Apply.
type memberState struct {
	inflight     atomic.Int64
	fails        atomic.Int32
	ejectedUntil atomic.Int64 // unix nanos
	stats        *counters
	// connectErrors, responseErrors and retries are MemberStats'.
	connectErrors, responseErrors, retries atomic.Uint64
}

// takesNew reports whether the member may get a new (non-sticky) request.
func (m *member) takesNew(now int64) bool {
	return m.healthy && !m.drain && m.weight > 0 && m.st.ejectedUntil.Load() <= now
}

// takesSticky reports whether a client already pinned to the member may
// stay: draining and weight-0 members keep their sessions.
func (m *member) takesSticky(now int64) bool {
	return m.healthy && m.st.ejectedUntil.Load() <= now
}

// balancer picks a member for a new request, or nil when none can take it.
type balancer interface {
	pick(r *http.Request, client netip.Addr, now int64) *member
}

var (
	_ balancer = (*roundRobin)(nil)
	_ balancer = (*leastRequest)(nil)
	_ balancer = (*hashRing)(nil)
)

// maxSchedule bounds the precomputed round-robin schedule; larger weight
// sums are scaled down, which keeps the ratios to within 1/maxSchedule.
const maxSchedule = 1 << 16

// roundRobin is smooth weighted round robin with an O(1) pick: one cycle
// of the interleaving is precomputed per Apply (nginx's smooth algorithm for
// small pools, stride scheduling for large ones), which spreads a heavy
// member's turns evenly instead of in bursts.
type roundRobin struct {
	schedule []*member
	members  []*member
	next     atomic.Uint64
}

func newRoundRobin(members []*member) *roundRobin {
	rr := &roundRobin{members: members}
	var eligible []*member
	var total uint64
	for _, m := range members {
		if m.healthy && !m.drain && m.weight > 0 {
			eligible = append(eligible, m)
			total += uint64(m.weight)
		}
	}
	if len(eligible) == 0 {
		return rr
	}
	g := uint64(0)
	for _, m := range eligible {
		g = gcd(g, uint64(m.weight))
	}
	weights := make([]uint64, len(eligible))
	var sum uint64
	for i, m := range eligible {
		w := uint64(m.weight) / g
		if total/g > maxSchedule {
			w = max(1, w*maxSchedule/(total/g))
		}
		weights[i] = w
		sum += w
	}
	rr.schedule = make([]*member, sum)
	if uint64(len(eligible))*sum <= 1<<22 {
		smoothSchedule(rr.schedule, eligible, weights, sum)
	} else {
		strideSchedule(rr.schedule, eligible, weights)
	}
	return rr
}

// smoothSchedule is nginx's smooth weighted round robin, run once over a
// whole cycle: O(members) per slot, so only for small pools.
func smoothSchedule(out, members []*member, weights []uint64, total uint64) {
	current := make([]int64, len(members))
	for i := range out {
		best := 0
		for j, w := range weights {
			current[j] += int64(w)
			if current[j] > current[best] {
				best = j
			}
		}
		current[best] -= int64(total)
		out[i] = members[best]
	}
}

// strideSchedule is stride scheduling: each member advances by 1/weight and
// the smallest pass goes next; O(log members) per slot for large pools,
// nearly as smooth as smoothSchedule.
func strideSchedule(out, members []*member, weights []uint64) {
	h := make(strideHeap, len(members))
	for i, w := range weights {
		h[i] = strideEntry{pass: 0.5 / float64(w), stride: 1 / float64(w), idx: i}
	}
	heap.Init(&h)
	for i := range out {
		e := &h[0]
		out[i] = members[e.idx]
		e.pass += e.stride
		heap.Fix(&h, 0)
	}
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

type strideEntry struct {
	pass, stride float64
	idx          int
}

type strideHeap []strideEntry

func (h strideHeap) Len() int { return len(h) }
func (h strideHeap) Less(i, j int) bool {
	if h[i].pass != h[j].pass {
		return h[i].pass < h[j].pass
	}
	return h[i].idx < h[j].idx
}
func (h strideHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *strideHeap) Push(x any)   { *h = append(*h, x.(strideEntry)) }
func (h *strideHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (rr *roundRobin) pick(_ *http.Request, _ netip.Addr, now int64) *member {
	n := uint64(len(rr.schedule))
	if n == 0 {
		return nil
	}
	i := rr.next.Add(1)
	// Only ejection makes a scheduled member unusable; skip a bounded
	// number of slots rather than rebuilding the schedule.
	for k := range min(n, 64) {
		if m := rr.schedule[(i+k)%n]; m.takesNew(now) {
			return m
		}
	}
	return pickAny(rr.members, now)
}

// pickAny scans from a random start for any member that takes new requests.
func pickAny(members []*member, now int64) *member {
	if len(members) == 0 {
		return nil
	}
	start := rand.IntN(len(members))
	for k := range members {
		if m := members[(start+k)%len(members)]; m.takesNew(now) {
			return m
		}
	}
	return nil
}

// leastRequest picks the less loaded (in-flight requests per weight) of two
// random members: power of two choices, O(1) and without herding.
type leastRequest struct {
	eligible []*member
	members  []*member
}

func newLeastRequest(members []*member) *leastRequest {
	lr := &leastRequest{members: members}
	for _, m := range members {
		if m.healthy && !m.drain && m.weight > 0 {
			lr.eligible = append(lr.eligible, m)
		}
	}
	return lr
}

func (lr *leastRequest) pick(_ *http.Request, _ netip.Addr, now int64) *member {
	n := len(lr.eligible)
	switch n {
	case 0:
		return nil
	case 1:
		if m := lr.eligible[0]; m.takesNew(now) {
			return m
		}
		return nil
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := lr.eligible[i], lr.eligible[j]
	okA, okB := a.takesNew(now), b.takesNew(now)
	switch {
	case okA && okB:
		// a.inflight/a.weight <= b.inflight/b.weight, without division.
		if a.st.inflight.Load()*int64(b.weight) <= b.st.inflight.Load()*int64(a.weight) {
			return a
		}
		return b
	case okA:
		return a
	case okB:
		return b
	}
	return pickAny(lr.eligible, now)
}

// hashRing is a consistent-hash ring (ketama style). Every member with a
// weight is on the ring, healthy or not, so a member going down moves only
// its own keys: the walk skips it to the next point. Hashes are FNV-1a with
// a fixed mixer, so every node builds the same ring.
type hashRing struct {
	points []ringPoint
	key    func(r *http.Request, client netip.Addr) []byte
	fall   *roundRobin
}

type ringPoint struct {
	hash uint64
	m    *member
}

// pointsPerMaxWeight is the number of ring points of a member of the
// largest weight in its pool.
const pointsPerMaxWeight = 160

func newHashRing(members []*member, key func(*http.Request, netip.Addr) []byte) *hashRing {
	hr := &hashRing{key: key, fall: newRoundRobin(members)}
	var maxW uint32
	for _, m := range members {
		maxW = max(maxW, m.weight)
	}
	if maxW == 0 {
		return hr
	}
	for _, m := range members {
		if m.weight == 0 {
			continue
		}
		n := max(1, int(uint64(m.weight)*pointsPerMaxWeight/uint64(maxW)))
		for i := range n {
			b := m.addr.AppendTo(nil)
			b = append(b, '#', byte(i), byte(i>>8))
			hr.points = append(hr.points, ringPoint{hash: hashBytes(b), m: m})
		}
	}
	sort.Slice(hr.points, func(i, j int) bool {
		if hr.points[i].hash != hr.points[j].hash {
			return hr.points[i].hash < hr.points[j].hash
		}
		return hr.points[i].m.hostport < hr.points[j].m.hostport
	})
	return hr
}

func (hr *hashRing) pick(r *http.Request, client netip.Addr, now int64) *member {
	k := hr.key(r, client)
	if k == nil || len(hr.points) == 0 {
		return hr.fall.pick(r, client, now)
	}
	h := hashBytes(k)
	i := sort.Search(len(hr.points), func(i int) bool { return hr.points[i].hash >= h })
	for n := range len(hr.points) {
		if m := hr.points[(i+n)%len(hr.points)].m; m.takesNew(now) {
			return m
		}
	}
	return nil
}

// hashBytes is FNV-1a finished with the splitmix64 mixer: FNV alone spreads
// short similar keys (addresses) poorly over the ring.
func hashBytes(b []byte) uint64 {
	f := fnv.New64a()
	f.Write(b)
	x := f.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func clientIPKey(_ *http.Request, client netip.Addr) []byte {
	if !client.IsValid() {
		return nil
	}
	return client.AsSlice()
}

func headerKey(name string) func(*http.Request, netip.Addr) []byte {
	return func(r *http.Request, client netip.Addr) []byte {
		if v := r.Header.Get(name); v != "" {
			return []byte(v)
		}
		return clientIPKey(r, client)
	}
}

func cookieKey(name string) func(*http.Request, netip.Addr) []byte {
	return func(r *http.Request, client netip.Addr) []byte {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			return []byte(c.Value)
		}
		return clientIPKey(r, client)
	}
}

// failed records a failed attempt on m, for outlier ejection and in its
// counters: a connect error when err is a *dialError, else a response
// error.
func (m *member) failed(err error, o Outlier) {
	var de *dialError
	if errors.As(err, &de) {
		m.st.connectErrors.Add(1)
	} else {
		m.st.responseErrors.Add(1)
	}
	m.outlier(false, o)
}

// outlier records the result of one attempt on a member for passive
// outlier ejection.
func (m *member) outlier(ok bool, o Outlier) {
	if ok {
		if m.st.fails.Load() != 0 {
			m.st.fails.Store(0)
		}
		return
	}
	if int(m.st.fails.Add(1)) >= o.ConsecutiveFailures {
		m.st.fails.Store(0)
		m.st.ejectedUntil.Store(time.Now().Add(o.EjectFor).UnixNano())
	}
}
