/* nat.h: counters, packet rewrites (FullNAT addresses and ports, TTL,
 * MACs), the next hop and the FullNAT source allocation. Callers have parsed the packet with
 * parse_packet, so every pointer in struct pkt is within the frame. */
#ifndef WEFT_NAT_H
#define WEFT_NAT_H

#include "csum.h"
#include "hash.h"
#include "maps.h"
#include "parse.h"

/* count adds a packet of bytes to counters s (NULL: none). */
static __always_inline void count(struct lb_stats *s, __u64 bytes)
{
	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

/* drop counts a drop for why in s (NULL: none) and returns XDP_DROP. */
static __always_inline int drop(struct lb_stats *s, enum lb_drop why)
{
	if (s && why < LB_DROP_MAX)
		s->drops[why]++;
	return XDP_DROP;
}

/* ttl_ok reports whether the packet may be forwarded (TTL or hop limit
 * above 1). */
static __always_inline int ttl_ok(const struct pkt *p)
{
	if (p->is_v6) {
		struct ipv6hdr *ip6 = pkt_ip6(p);
		return ip6 && ip6->hop_limit > 1;
	}
	struct iphdr *ip = pkt_ip4(p);
	return ip && ip->ttl > 1;
}

/* dec_ttl decrements the TTL or hop limit (checked by ttl_ok), updating
 * the IPv4 header checksum: TTL shares a 16-bit word with the protocol. */
static __always_inline void dec_ttl(struct pkt *p)
{
	if (p->is_v6) {
		struct ipv6hdr *ip6 = pkt_ip6(p);
		if (ip6)
			ip6->hop_limit--;
		return;
	}
	struct iphdr *ip = pkt_ip4(p);
	if (!ip)
		return;
	__be16 *word = (__be16 *)&ip->ttl;
	__be16 old = *word;
	ip->ttl--;
	csum_apply(&ip->check, csum_acc2(0, old, *word));
}

/* rewrite_flow sets the packet's addresses and ports to src:sport ->
 * dst:dport and updates the IPv4 header and TCP/UDP checksums (an IPv4 UDP
 * checksum of zero means none and stays zero). */
static __always_inline void rewrite_flow(struct pkt *p, const struct lb_addr *src, __be16 sport,
					 const struct lb_addr *dst, __be16 dport)
{
	__u64 acc;

	if (p->is_v6) {
		struct ipv6hdr *ip6 = pkt_ip6(p);
		if (!ip6)
			return;
		acc = csum_acc_addr(0, &p->key.src, src);
		acc = csum_acc_addr(acc, &p->key.dst, dst);
		__builtin_memcpy(&ip6->saddr, src->a, 16);
		__builtin_memcpy(&ip6->daddr, dst->a, 16);
	} else {
		struct iphdr *ip = pkt_ip4(p);
		if (!ip)
			return;
		acc = csum_acc4(0, ip->saddr, src->a[3]);
		acc = csum_acc4(acc, ip->daddr, dst->a[3]);
		ip->saddr = src->a[3];
		ip->daddr = dst->a[3];
		csum_apply(&ip->check, acc);
	}

	__be16 *ports = p->l4;
	acc = csum_acc2(acc, ports[0], sport);
	acc = csum_acc2(acc, ports[1], dport);
	ports[0] = sport;
	ports[1] = dport;

	__sum16 *sum = p->l4_csum;
	if (p->key.proto == IPPROTO_UDP_) {
		if (!p->is_v6 && *sum == 0)
			return;
		csum_apply(sum, acc);
		if (*sum == 0)
			*sum = 0xffff;
		return;
	}
	csum_apply(sum, acc);
}

/* rewrite_addrs sets the packet's addresses to src -> dst and updates
 * the IPv4 header checksum: a later fragment, whose L4 header (and the
 * checksum over the whole datagram) is in its first. */
static __always_inline void rewrite_addrs(struct pkt *p, const struct lb_addr *src, const struct lb_addr *dst)
{
	if (p->is_v6) {
		struct ipv6hdr *ip6 = pkt_ip6(p);
		if (!ip6)
			return;
		__builtin_memcpy(&ip6->saddr, src->a, 16);
		__builtin_memcpy(&ip6->daddr, dst->a, 16);
		return;
	}
	struct iphdr *ip = pkt_ip4(p);
	if (!ip)
		return;
	__u64 acc = csum_acc4(0, ip->saddr, src->a[3]);
	acc = csum_acc4(acc, ip->daddr, dst->a[3]);
	ip->saddr = src->a[3];
	ip->daddr = dst->a[3];
	csum_apply(&ip->check, acc);
}

/* set_macs addresses the frame to dst from the MAC it was addressed to,
 * which is the receiving interface's (XDP_TX sends it out of the same). */
static __always_inline void set_macs(struct pkt *p, const __u8 *dst)
{
	__builtin_memcpy(p->eth->h_source, p->eth->h_dest, ETH_ALEN);
	__builtin_memcpy(p->eth->h_dest, dst, ETH_ALEN);
}

/* next_hop returns the MAC to send to addr: its neighbor entry or, if
 * via_gw, the default gateway's. NULL if there is none. */
static __always_inline const __u8 *next_hop(const struct lb_addr *addr, int via_gw)
{
	struct neigh *n = bpf_map_lookup_elem(&neighbors, addr);
	if (n)
		return n->mac;
	if (!via_gw)
		return NULL;
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->has_gw)
		return NULL;
	return cfg->gw_mac;
}

static __always_inline int addr_eq(const struct lb_addr *x, const struct lb_addr *y)
{
	return x->a[0] == y->a[0] && x->a[1] == y->a[1] && x->a[2] == y->a[2] && x->a[3] == y->a[3];
}

/* ct_timeout is how long a flow may be idle before its entry expires,
 * given its protocol and state. */
static __always_inline __u32 ct_timeout(__u8 proto, int established, int closing)
{
	if (proto != IPPROTO_TCP_)
		return CT_TIMEOUT_UDP;
	if (closing)
		return CT_TIMEOUT_CLOSING;
	return established ? CT_TIMEOUT_TCP : CT_TIMEOUT_SYN;
}

/* nat_expired reports whether a reverse entry's flow has been idle long
 * enough that its source port may serve another flow. */
static __always_inline int nat_expired(const struct nat_value *nv, __u8 proto, __u32 now)
{
	return now - nv->last_seen >
	       ct_timeout(proto, nv->flags & NAT_REPLIED, nv->flags & NAT_CLOSING);
}

/* nat_same_flow reports whether reverse entry old is the client flow nv. */
static __always_inline int nat_same_flow(const struct nat_value *old, const struct nat_value *nv)
{
	return addr_eq(&old->client, &nv->client) && addr_eq(&old->vip, &nv->vip) &&
	       old->cport == nv->cport && old->vport == nv->vport;
}

/* rev_key is the reply tuple (backend -> local address) of FullNAT flow
 * ct. */
static __always_inline struct flow_key rev_key(const struct ct_value *ct, __u8 proto)
{
	struct flow_key rk = {
		.src = ct->backend,
		.dst = ct->local,
		.sport = ct->bport,
		.dport = ct->lport,
		.proto = proto,
	};
	return rk;
}

/* nat_entry is the reverse entry of p's FullNAT flow ct. */
static __always_inline struct nat_value nat_entry(const struct pkt *p, const struct svc_value *svc,
						  const struct ct_value *ct, __u32 now)
{
	struct nat_value nv = {
		.client = p->key.src,
		.vip = p->key.dst,
		.cport = p->key.sport,
		.vport = p->key.dport,
		.svc_id = svc->id,
		.backend_id = ct->backend_id,
		.last_seen = now,
	};
	return nv;
}

/* nat_claim records nv at reply tuple rk in map (nat_new or nat_reverse)
 * unless another live flow holds it there. A tuple held by this very flow
 * (its conntrack entry expired, was evicted or is on another CPU) or by a
 * flow gone idle is taken over. Returns 0, or -1 if the tuple is taken. */
static __always_inline int nat_claim(void *map, const struct flow_key *rk, const struct nat_value *nv,
				     __u32 now)
{
	if (bpf_map_update_elem(map, rk, nv, BPF_NOEXIST) == 0)
		return 0;
	struct nat_value *old = bpf_map_lookup_elem(map, rk);
	if (old && (nat_same_flow(old, nv) || nat_expired(old, rk->proto, now)) &&
	    bpf_map_update_elem(map, rk, nv, BPF_ANY) == 0)
		return 0;
	return -1;
}

/* nat_probe_port tries port i of nat_alloc's search, whose state is in
 * the scratch entry (a bpf_loop callback: the verifier checks it once,
 * not once per port). Returns 1 to stop. */
static long nat_probe_port(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 1;
	sc->rk.dport = bpf_htons(NAT_PORT_MIN + (sc->nh + i) % NAT_PORT_RANGE);
	/* An established flow's tuple is read, never taken, unless it is
	 * this flow's or idle: new flows do not displace established ones
	 * here either. */
	struct nat_value *est = bpf_map_lookup_elem(&nat_reverse, &sc->rk);
	if (est && !nat_same_flow(est, &sc->nv) && !nat_expired(est, sc->rk.proto, sc->now))
		return 0;
	if (nat_claim(&nat_new, &sc->rk, &sc->nv, sc->now) < 0)
		return 0;
	/* reverse() looks in nat_reverse first: a stale entry there would
	 * take this flow's replies. */
	if (est)
		bpf_map_delete_elem(&nat_reverse, &sc->rk);
	sc->found = 1;
	return 1;
}

/* nat_alloc picks the FullNAT source of a new flow: a local address of
 * the flow's family by hash, and a port derived from the hash, probing
 * the next NAT_PORT_PROBES-1 ports when the reply tuple (backend ->
 * local:port) is held by another live flow, new (nat_new) or established
 * (nat_reverse); an expired one's is taken over. It records the reverse
 * entry in nat_new (the flow is new) and fills ct->local and ct->lport.
 * Deterministic: the same flow gets the same source on every node (ports
 * held aside). Returns 0, or -1 if no source is free. */
static __always_inline int nat_alloc(const struct pkt *p, __u32 hash, const struct svc_value *svc,
				     struct ct_value *ct, __u32 now)
{
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return -1;
	__u32 n = p->is_v6 ? cfg->n_local6 : cfg->n_local4;
	if (n == 0 || n > MAX_LOCAL_ADDRS)
		return -1;
	__u32 idx = hash % n + (p->is_v6 ? MAX_LOCAL_ADDRS : 0);
	struct lb_addr *la = bpf_map_lookup_elem(&local_addrs, &idx);
	if (!la)
		return -1;
	ct->local = *la;

	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return -1;
	sc->nv = nat_entry(p, svc, ct, now);
	sc->rk = (struct flow_key){
		.src = ct->backend,
		.dst = *la,
		.sport = ct->bport,
		.proto = p->key.proto,
	};
	sc->nh = nat_hash(hash);
	sc->now = now;
	sc->found = 0;
	bpf_loop(NAT_PORT_PROBES, nat_probe_port, NULL, 0);
	if (!sc->found)
		return -1;
	ct->lport = sc->rk.dport;
	return 0;
}

/* nat_touch records a packet of a FullNAT flow, either way, on its
 * reverse entry: time, answer, close. */
static __always_inline void nat_touch(struct nat_value *nv, const struct pkt *p, int reply,
				      __u32 now)
{
	__u8 flags = nv->flags;
	if (reply)
		flags |= NAT_REPLIED;
	if (p->key.proto == IPPROTO_TCP_ && (p->tcp_flags & (TCP_FLAG_FIN_ | TCP_FLAG_RST_)))
		flags |= NAT_CLOSING;
	if (flags != nv->flags)
		nv->flags = flags;
	if (nv->last_seen != now)
		nv->last_seen = now;
}

#endif /* WEFT_NAT_H */
