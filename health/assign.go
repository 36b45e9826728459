package health

import (
	"cmp"
	"hash/fnv"
	"slices"
)

// checkers picks the k nodes that probe member, by rendezvous
// (highest-random-weight) hashing: every node scores hash(pool, member,
// node), and the best-scoring nodes win, the first pass taking at most one
// node per zone so a member's checkers are in distinct zones when there are
// enough zones, the second filling up with the best remaining nodes.
//
// The result depends only on the set of nodes, not their order, and a node's
// arrival or departure changes only the members it is (or was) picked for.
func checkers(key MemberKey, nodes []NodeInfo, k int) []string {
	type scored struct {
		NodeInfo
		score uint64
	}
	ss := make([]scored, len(nodes))
	for i, n := range nodes {
		ss[i] = scored{n, score(key, n.Name)}
	}
	slices.SortFunc(ss, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	picked := make([]string, 0, k)
	taken := make([]bool, len(ss))
	zones := make(map[string]bool)
	for i, s := range ss {
		if len(picked) == k {
			break
		}
		if !zones[s.Zone] {
			zones[s.Zone] = true
			taken[i] = true
			picked = append(picked, s.Name)
		}
	}
	for i, s := range ss {
		if len(picked) == k {
			break
		}
		if !taken[i] {
			picked = append(picked, s.Name)
		}
	}
	return picked
}

// score is FNV-1a over the fields, separated by zero bytes, finished with
// splitmix64's mixer: FNV alone spreads similar inputs poorly.
func score(key MemberKey, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key.Pool))
	h.Write([]byte{0})
	b, _ := key.Addr.MarshalBinary()
	h.Write(b)
	h.Write([]byte{0})
	h.Write([]byte(node))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
