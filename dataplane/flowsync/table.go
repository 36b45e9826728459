package flowsync

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftlb/weft/dataplane/maglev"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

// Buckets is the number of ownership buckets; it must be the XDP program's
// FLOW_BUCKETS (../bpf/consts.h), which the node checks at start.
const Buckets = 4096

// Replicas is how many nodes own each bucket: two, in two zones where the
// cluster has them, so that a flow's copies survive the loss of a node or
// of a whole zone.
const Replicas = 2

// Member is a node that may own buckets.
type Member struct {
	Name, Zone string
}

// Plan computes the ownership table of members over the given number of
// buckets: for each bucket, by rendezvous hashing, the member with the
// highest score first, then the highest-scoring member of a zone not yet
// among the bucket's owners (any member once every zone is). A member
// joining or leaving moves only the buckets it gains or loses. The result
// depends on the member set alone, not on its order; its epoch is set when
// it is committed.
func Plan(members []Member, buckets int) *statev1.FlowOwnership {
	ms := slices.SortedFunc(slices.Values(members), func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.Name == b.Name })
	replicas := min(Replicas, len(ms))
	out := &statev1.FlowOwnership{Replicas: uint32(replicas)}
	if replicas == 0 {
		return out
	}
	for _, m := range ms {
		out.Nodes = append(out.Nodes, m.Name)
	}
	out.Owners = make([]byte, 0, 2*replicas*buckets)
	picked := make([]int, 0, replicas)
	for b := range buckets {
		picked = picked[:0]
		for len(picked) < replicas {
			best, bestScore, bestNewZone := -1, uint64(0), false
			for i, m := range ms {
				if slices.Contains(picked, i) {
					continue
				}
				newZone := !slices.ContainsFunc(picked, func(j int) bool { return ms[j].Zone == m.Zone })
				score := maglev.SipHash24(uint64(b), bucketKey, m.Name)
				if best < 0 || (newZone && !bestNewZone) || (newZone == bestNewZone && score > bestScore) {
					best, bestScore, bestNewZone = i, score, newZone
				}
			}
			picked = append(picked, best)
		}
		for _, i := range picked {
			out.Owners = binary.BigEndian.AppendUint16(out.Owners, uint16(i))
		}
	}
	return out
}

// bucketKey and heirKey separate the hashes of bucket owners and heirs.
const (
	bucketKey = 0x626b74 // "bkt"
	heirKey   = 0x686569 // "hei"
)

// table is a committed ownership table, decoded.
type table struct {
	epoch    uint64
	nodes    []string
	replicas int
	owners   []uint16
}

func decodeTable(o *statev1.FlowOwnership, buckets int) (*table, error) {
	if o == nil {
		return nil, nil
	}
	r := int(o.GetReplicas())
	if r == 0 || len(o.GetOwners()) != 2*r*buckets {
		return nil, fmt.Errorf("flow ownership %d: %d bytes of owners for %d buckets of %d, want %d",
			o.GetEpoch(), len(o.GetOwners()), buckets, r, 2*r*buckets)
	}
	t := &table{epoch: o.GetEpoch(), nodes: o.GetNodes(), replicas: r, owners: make([]uint16, r*buckets)}
	for i := range t.owners {
		t.owners[i] = binary.BigEndian.Uint16(o.GetOwners()[2*i:])
		if int(t.owners[i]) >= len(t.nodes) {
			return nil, fmt.Errorf("flow ownership %d: owner %d names no node", o.GetEpoch(), t.owners[i])
		}
	}
	return t, nil
}

// owner is the name of bucket b's i-th owner.
func (t *table) owner(b, i int) string { return t.nodes[t.owners[b*t.replicas+i]] }

// ownersOf returns the names of bucket b's owners, in order.
func (t *table) ownersOf(b int) []string {
	if t == nil {
		return nil
	}
	out := make([]string, t.replicas)
	for i := range out {
		out[i] = t.owner(b, i)
	}
	return out
}

// heirs orders the nodes that take over local address a when its node,
// owner, is lost: nodes of other zones first, then the owner's own zone,
// each by rendezvous score for a, so that one node's addresses spread over
// several heirs and a lost zone's are taken by the zones that remain.
func heirs(a netip.Addr, owner Member, members []Member) []string {
	b := a.As16()
	k0, k1 := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])^heirKey
	type scored struct {
		name     string
		sameZone bool
		score    uint64
	}
	var cs []scored
	for _, m := range members {
		if m.Name != owner.Name {
			cs = append(cs, scored{m.Name, m.Zone == owner.Zone, maglev.SipHash24(k0, k1, m.Name)})
		}
	}
	slices.SortFunc(cs, func(x, y scored) int {
		if x.sameZone != y.sameZone {
			if x.sameZone {
				return 1
			}
			return -1
		}
		return cmp.Compare(y.score, x.score)
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}
