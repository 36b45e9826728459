/* flow.h: flow ownership and sync. Every node forwards the flows ECMP gives
 * it; the nodes that own a flow's bucket (flow_owners, from the committed
 * ownership table) and the heir of its FullNAT local address keep copies,
 * which Go installs from the reports this file puts in sync_ring. A packet
 * of a flow this node does not know is handed to the node that does: a
 * client packet to its bucket's owner, a reply to a local address to the
 * node that holds it. Handing over is a MAC rewrite on the shared segment
 * and XDP_TX; a frame that comes from a peer is never handed on. This node
 * answers ARP for the local addresses it holds (its own, and a lost
 * node's it inherited). */
#ifndef WEFT_FLOW_H
#define WEFT_FLOW_H

#include "nat.h"

/* flow_counters_get returns this CPU's flow counters. */
static __always_inline struct flow_counters *flow_counters_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&flow_stats, &zero);
}

/* from_peer reports whether the frame was sent by another node. */
static __always_inline int from_peer(const struct pkt *p)
{
	struct peer_mac k = {};
	__builtin_memcpy(k.mac, p->eth->h_source, ETH_ALEN);
	return bpf_map_lookup_elem(&peer_macs, &k) != NULL;
}

/* hand_to sends the frame, unchanged but for its MACs, to peer target.
 * Returns XDP_TX, or -1 if target is this node, unknown, or the frame came
 * from a peer already. */
static __always_inline int hand_to(struct pkt *p, __u32 target)
{
	if (target == TARGET_SELF || from_peer(p))
		return -1;
	struct peer *pe = bpf_map_lookup_elem(&peers, &target);
	if (!pe || !pe->valid)
		return -1;
	set_macs(p, pe->mac);
	return XDP_TX;
}

/* flow_bucket is the ownership bucket of a flow hash. */
static __always_inline __u32 flow_bucket(__u32 hash)
{
	return hash >> (32 - FLOW_BUCKET_BITS);
}

/* hand_to_owner hands a packet of a flow this node has no entry for to
 * the owner of its bucket. Returns XDP_TX, or -1 to handle it here. */
static __always_inline int hand_to_owner(struct pkt *p, __u32 hash)
{
	__u32 b = flow_bucket(hash);
	__u32 *t = bpf_map_lookup_elem(&flow_owners, &b);
	if (!t)
		return -1;
	int r = hand_to(p, *t);
	if (r >= 0) {
		struct flow_counters *fc = flow_counters_get();
		if (fc)
			fc->redirect_forward++;
	}
	return r;
}

/* hand_reply hands a reply to a cluster local address, which missed
 * nat_reverse, to the node that holds the address's flows. Returns XDP_TX,
 * or -1 to pass it. */
static __always_inline int hand_reply(struct pkt *p)
{
	struct snat_value *sv = bpf_map_lookup_elem(&snat_addrs, &p->key.dst);
	if (!sv)
		return -1;
	int r = hand_to(p, sv->target);
	if (r >= 0) {
		struct flow_counters *fc = flow_counters_get();
		if (fc)
			fc->redirect_reply++;
	}
	return r;
}

/* sync_report puts a report of the flow p belongs to in sync_ring, if flow
 * sync runs. */
static __always_inline void sync_report(const struct pkt *p, const struct svc_value *svc,
					const struct ct_value *ct, enum sync_reason why)
{
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->sync)
		return;
	struct flow_counters *fc = flow_counters_get();
	struct sync_event *e = bpf_ringbuf_reserve(&sync_ring, sizeof(*e), 0);
	if (!e) {
		if (fc)
			fc->sync_lost++;
		return;
	}
	e->key = p->key;
	e->backend = ct->backend;
	e->local = ct->local;
	e->bport = ct->bport;
	e->lport = ct->lport;
	e->hash = flow_hash(&p->key);
	e->flags = ct->flags;
	e->mode = svc->mode;
	e->reason = why;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
	if (fc)
		fc->sync_events++;
}

/* arp4 is an Ethernet/IPv4 ARP packet (RFC 826). */
struct arp4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

/* handle_arp answers an ARP request for a local address this node holds,
 * in place (XDP_TX); anything else passes to the stack. */
static __always_inline int handle_arp(struct pkt *p)
{
	struct arp4 *a = p->l3;
	if ((void *)(a + 1) > p->data_end)
		return XDP_PASS;
	if (a->htype != bpf_htons(1) || a->ptype != bpf_htons(ETH_P_IP_) || a->hlen != 6 ||
	    a->plen != 4 || a->op != bpf_htons(1))
		return XDP_PASS;
	struct lb_addr target;
	__be32 tpa;
	__builtin_memcpy(&tpa, a->tpa, 4);
	addr_from_v4(&target, tpa);
	struct snat_value *sv = bpf_map_lookup_elem(&snat_addrs, &target);
	if (!sv || !sv->held)
		return XDP_PASS;
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;
	/* The request's sender becomes the reply's target. */
	__builtin_memcpy(a->tha, a->sha, ETH_ALEN);
	__builtin_memcpy(a->tpa, a->spa, 4);
	__builtin_memcpy(a->sha, cfg->mac, ETH_ALEN);
	__builtin_memcpy(a->spa, &tpa, 4);
	a->op = bpf_htons(2);
	__builtin_memcpy(p->eth->h_dest, a->tha, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, cfg->mac, ETH_ALEN);
	struct flow_counters *fc = flow_counters_get();
	if (fc)
		fc->arp_replies++;
	return XDP_TX;
}

#endif /* WEFT_FLOW_H */
