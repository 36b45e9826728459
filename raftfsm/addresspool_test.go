package raftfsm

import (
	"testing"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func addressPool(name string, cidrs ...string) *weftv1.Resource {
	p := &weftv1.AddressPool{Metadata: md(name, 0), Spec: &weftv1.AddressPoolSpec{Cidrs: cidrs}}
	return &weftv1.Resource{Kind: &weftv1.Resource_AddressPool{AddressPool: p}}
}

// pooledLB is a load balancer that takes its VIP (vip, or the pool's
// choice when empty) from an address pool.
func pooledLB(name, addressPool, vip string, port uint32) *weftv1.Resource {
	r := lb(name, 0, vip, listener("tcp", port, ""))
	r.GetLoadBalancer().Spec.AddressPool = addressPool
	return r
}

func TestFSM_AddressPoolAllocation(t *testing.T) {
	f := NewFSM(0)
	index := uint64(setupIndex)
	applyOK := func(rs ...*weftv1.Resource) {
		t.Helper()
		index++
		mustApply(t, f, index, ApplyResourcesType, upsert(rs...))
	}
	vipOf := func(name string) string {
		t.Helper()
		l := f.State().LoadBalancer(name)
		if l == nil {
			t.Fatalf("load balancer %q not stored", name)
		}
		return l.GetSpec().GetVip()
	}
	zoned := addressPool("public", "192.0.2.0/30", "198.51.100.7/32")
	zoned.GetAddressPool().Spec.PrimaryZone, zoned.GetAddressPool().Spec.BackupZones = "a", []string{"b"}
	applyOK(zoned)

	// A /30 has two usable addresses: .0 and .3 are never given.
	applyOK(pooledLB("one", "public", "", 80))
	applyOK(pooledLB("two", "public", "", 80), pooledLB("three", "public", "", 80))
	for name, want := range map[string]string{"one": "192.0.2.1", "two": "192.0.2.2", "three": "198.51.100.7"} {
		if got := vipOf(name); got != want {
			t.Errorf("load balancer %q: vip = %s, want %s", name, got, want)
		}
	}
	if l := f.State().LoadBalancer("one"); l.GetSpec().GetPrimaryZone() != "a" || len(l.GetSpec().GetBackupZones()) != 1 {
		t.Errorf("load balancer one: zones %q %q, want the pool's a and [b]", l.GetSpec().GetPrimaryZone(), l.GetSpec().GetBackupZones())
	}

	// Rewriting with the VIP still empty keeps the address and changes nothing.
	index++
	res := mustApply(t, f, index, ApplyResourcesType, upsert(pooledLB("one", "public", "", 80))).(*ApplyResult)
	if got := res.Results[0].Action; got != ActionUnchanged {
		t.Errorf("rewrite of one: action %s, want %s", got, ActionUnchanged)
	}

	index++
	checkStateError(t, apply(t, f, index, ApplyResourcesType, upsert(pooledLB("four", "public", "", 80))),
		FailedPrecondition, `load balancer "four": address pool "public" has no free address`)
	// An address in a pool is held by one load balancer, whether it names the pool or not.
	index++
	checkStateError(t, apply(t, f, index, ApplyResourcesType, upsert(lb("four", 0, "192.0.2.2", listener("tcp", 81, "")))),
		AlreadyExists, `load balancer "four": spec.vip: 192.0.2.2 of address pool "public" is held by load balancer "two"`)
	index++
	checkStateError(t, apply(t, f, index, ApplyResourcesType, upsert(pooledLB("four", "public", "203.0.113.1", 80))),
		FailedPrecondition, `load balancer "four": spec.vip: 203.0.113.1 is not in address pool "public" [192.0.2.0/30 198.51.100.7/32]`)
	index++
	checkStateError(t, apply(t, f, index, ApplyResourcesType, upsert(pooledLB("four", "private", "", 80))),
		FailedPrecondition, `load balancer "four": spec.addressPool: address pool "private" does not exist`)

	// Deleting a holder frees its address for the next one.
	index++
	mustApply(t, f, index, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindLoadBalancer, Name: "two"})
	applyOK(pooledLB("four", "public", "", 80))
	if got := vipOf("four"); got != "192.0.2.2" {
		t.Errorf("load balancer four: vip = %s, want the freed 192.0.2.2", got)
	}
}

func TestFSM_AddressPoolInvariants(t *testing.T) {
	const index = 100
	tests := []struct {
		name     string
		setup    [][]*weftv1.Resource
		batch    []*weftv1.Resource
		wantKind ErrorKind
		wantMsg  string
	}{
		{
			name:     "overlap with another pool",
			setup:    [][]*weftv1.Resource{{addressPool("a", "192.0.2.0/24")}},
			batch:    []*weftv1.Resource{addressPool("b", "10.0.0.0/8", "192.0.2.128/25")},
			wantKind: AlreadyExists,
			wantMsg:  `address pool "b": spec.cidrs[1]: 192.0.2.128/25 overlaps 192.0.2.0/24 of address pool "a"`,
		},
		{
			name:     "shrinking past a held address",
			setup:    [][]*weftv1.Resource{{addressPool("a", "192.0.2.0/24")}, {pooledLB("web", "a", "192.0.2.200", 80)}},
			batch:    []*weftv1.Resource{addressPool("a", "192.0.2.0/25")},
			wantKind: FailedPrecondition,
			wantMsg:  `address pool "a": spec.cidrs: load balancer "web" holds 192.0.2.200, which the pool would no longer contain`,
		},
		{
			name: "covering a shared VIP",
			setup: [][]*weftv1.Resource{{lb("tcp", 0, "192.0.2.9", listener("tcp", 80, "")),
				lb("udp", 0, "192.0.2.9", listener("udp", 53, ""))}},
			batch:    []*weftv1.Resource{addressPool("a", "192.0.2.0/28")},
			wantKind: FailedPrecondition,
			wantMsg:  `address pool "a": spec.cidrs: 192.0.2.9 is the VIP of load balancers "tcp" and "udp", and an address in a pool is held by one`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(0)
			applySetup(t, f, tc.setup)
			checkStateError(t, apply(t, f, index, ApplyResourcesType, upsert(tc.batch...)), tc.wantKind, tc.wantMsg)
		})
	}

	t.Run("in use", func(t *testing.T) {
		f := NewFSM(0)
		applySetup(t, f, [][]*weftv1.Resource{{addressPool("a", "192.0.2.0/24"), pooledLB("web", "a", "", 80)}})
		checkStateError(t, apply(t, f, index, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindAddressPool, Name: "a"}),
			FailedPrecondition, `address pool "a" is used by load balancer "web" (VIP 192.0.2.1)`)
	})
}
