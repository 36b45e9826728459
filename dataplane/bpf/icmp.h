/* icmp.h: ICMP errors about tracked flows. An error about a packet the
 * balancer forwarded or translated must reach the host that sent that
 * packet, in that host's addresses, or path-MTU discovery breaks:
 *  - to a VIP, about VIP:port -> client (a reply): the service's backend
 *    sent it, so it goes to the backend (DSR: as is; FullNAT: translated
 *    to local address -> backend, the inner packet to backend -> local);
 *  - to a FullNAT local address, about local -> backend (a forwarded client
 *    packet): translated to VIP -> client, the inner packet to client ->
 *    VIP, and sent to the client.
 * Handled: IPv4 destination unreachable (fragmentation needed included),
 * ICMPv6 destination unreachable and packet too big. The inner packet's
 * IPv4 header checksum is updated; its TCP/UDP checksum is not (an error
 * carries only part of the datagram, and hosts do not check it). */
#ifndef WEFT_ICMP_H
#define WEFT_ICMP_H

#include "nat.h"

#define ICMP_DEST_UNREACH_ 3
#define ICMPV6_DEST_UNREACH_ 1
#define ICMPV6_PKT_TOOBIG_ 2

/* icmp_hdr is the ICMP or ICMPv6 header of an error message. */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 csum; /* network order */
	__be32 rest;  /* unused, or the next-hop MTU */
};

/* icmp_target is where an ICMP error goes and how it is rewritten; the
 * addresses point into the conntrack, ct_new, nat_reverse or nat_new
 * entry. */
struct icmp_target {
	const struct lb_addr *osrc, *odst; /* outer addresses (FullNAT) */
	const struct lb_addr *isrc, *idst; /* quoted addresses (FullNAT) */
	const struct lb_addr *next_hop;    /* where to send it */
	__be16 isport, idport;             /* quoted ports (FullNAT) */
	__u32 svc_id, backend_id;          /* counters */
	__u8 rewrite;                      /* FullNAT: rewrite addresses */
};

/* icmp_resolve fills t for an error about a quoted packet whose 5-tuple,
 * reversed, is rk: the tuple of the flow the quoted packet answered
 * (client -> VIP) or the reply tuple of a FullNAT flow (backend -> local).
 * Returns 0, or -1 if the quoted packet is of no tracked flow. */
static __always_inline int icmp_resolve(const struct pkt *p, const struct flow_key *rk,
					struct icmp_target *t)
{
	/* The quoted packet left from the address the error is sent to. */
	if (!addr_eq(&rk->dst, &p->key.dst))
		return -1;

	struct svc_key sk = {.vip = rk->dst, .port = rk->dport, .proto = rk->proto};
	struct svc_value *svc = bpf_map_lookup_elem(&services, &sk);
	if (svc) {
		struct ct_value *ct = bpf_map_lookup_elem(&conntrack, rk);
		if (!ct || !(ct->flags & CT_VALID))
			ct = bpf_map_lookup_elem(&ct_new, rk);
		if (!ct || !(ct->flags & CT_VALID))
			return -1;
		t->svc_id = svc->id;
		t->backend_id = ct->backend_id;
		t->next_hop = &ct->backend;
		if (svc->mode == LB_MODE_DSR)
			return 0;
		t->rewrite = 1;
		t->osrc = &ct->local;
		t->odst = &ct->backend;
		t->isrc = &ct->backend;
		t->isport = ct->bport;
		t->idst = &ct->local;
		t->idport = ct->lport;
		return 0;
	}

	struct nat_value *nv = bpf_map_lookup_elem(&nat_reverse, rk);
	if (!nv)
		nv = bpf_map_lookup_elem(&nat_new, rk);
	if (!nv)
		return -1;
	t->svc_id = nv->svc_id;
	t->backend_id = nv->backend_id;
	t->next_hop = &nv->client;
	t->rewrite = 1;
	t->osrc = &nv->vip;
	t->odst = &nv->client;
	t->isrc = &nv->client;
	t->isport = nv->cport;
	t->idst = &nv->vip;
	t->idport = nv->vport;
	return 0;
}

/* icmp_admit checks TTL and next hop and counts the error. Returns the
 * next-hop MAC, or NULL with *verdict set to the drop. */
static __always_inline const __u8 *icmp_admit(const struct pkt *p, const struct icmp_target *t,
					      __u64 bytes, int *verdict)
{
	__u32 sid = t->svc_id, bid = t->backend_id;
	struct lb_stats *ss = bpf_map_lookup_elem(&svc_stats, &sid);
	if (!ttl_ok(p)) {
		*verdict = drop(ss, LB_DROP_TTL);
		return NULL;
	}
	/* FullNAT reaches backends and clients through the gateway too;
	 * DSR backends are on link. */
	const __u8 *mac = next_hop(t->next_hop, t->rewrite);
	if (!mac) {
		*verdict = drop(ss, LB_DROP_NO_NEIGH);
		return NULL;
	}
	count(ss, bytes);
	count(bpf_map_lookup_elem(&backend_stats, &bid), bytes);
	return mac;
}

/* handle_icmp4 handles an ICMP message (IPv4). */
static __always_inline int handle_icmp4(struct pkt *p, __u64 bytes)
{
	struct iphdr *ip = pkt_ip4(p);
	struct icmp_hdr *ih = p->l4;
	void *end = p->data_end;
	if (!ip || (void *)(ih + 1) > end || ih->type != ICMP_DEST_UNREACH_)
		return XDP_PASS;
	struct iphdr *in = (void *)(ih + 1);
	if ((void *)(in + 1) > end || in->version != 4 || in->ihl < 5)
		return XDP_PASS;
	__be16 *ports = (void *)in + in->ihl * 4;
	/* The quote ends with the outer datagram, not the frame: bytes in
	 * the Ethernet padding are not quoted ports. */
	if ((void *)(ports + 2) > end || sizeof(*ih) + in->ihl * 4 + 4 > p->l4_len)
		return XDP_PASS;
	if (in->protocol != IPPROTO_TCP_ && in->protocol != IPPROTO_UDP_)
		return XDP_PASS;

	struct flow_key rk = {.sport = ports[1], .dport = ports[0], .proto = in->protocol};
	addr_from_v4(&rk.src, in->daddr);
	addr_from_v4(&rk.dst, in->saddr);
	struct icmp_target t = {};
	if (icmp_resolve(p, &rk, &t) < 0)
		return XDP_PASS;
	int verdict = XDP_DROP;
	const __u8 *mac = icmp_admit(p, &t, bytes, &verdict);
	if (!mac)
		return verdict;

	if (t.rewrite) {
		/* Outer header. */
		__u64 acc = csum_acc4(0, ip->saddr, t.osrc->a[3]);
		acc = csum_acc4(acc, ip->daddr, t.odst->a[3]);
		ip->saddr = t.osrc->a[3];
		ip->daddr = t.odst->a[3];
		csum_apply(&ip->check, acc);

		/* Quoted header and ports; the ICMP checksum covers them all,
		 * the quoted header's own checksum included. */
		__u64 iacc = csum_acc4(0, in->saddr, t.isrc->a[3]);
		iacc = csum_acc4(iacc, in->daddr, t.idst->a[3]);
		__sum16 old = in->check;
		in->saddr = t.isrc->a[3];
		in->daddr = t.idst->a[3];
		csum_apply(&in->check, iacc);
		iacc = csum_acc2(iacc, old, in->check);
		iacc = csum_acc2(iacc, ports[0], t.isport);
		iacc = csum_acc2(iacc, ports[1], t.idport);
		ports[0] = t.isport;
		ports[1] = t.idport;
		csum_apply(&ih->csum, iacc);
	}
	dec_ttl(p);
	set_macs(p, mac);
	return XDP_TX;
}

/* handle_icmp6 handles an ICMPv6 message. */
static __always_inline int handle_icmp6(struct pkt *p, __u64 bytes)
{
	struct ipv6hdr *ip6 = pkt_ip6(p);
	struct icmp_hdr *ih = p->l4;
	void *end = p->data_end;
	if (!ip6 || (void *)(ih + 1) > end ||
	    (ih->type != ICMPV6_DEST_UNREACH_ && ih->type != ICMPV6_PKT_TOOBIG_))
		return XDP_PASS;
	struct ipv6hdr *in = (void *)(ih + 1);
	if ((void *)(in + 1) > end || in->version != 6)
		return XDP_PASS;
	__be16 *ports = (void *)(in + 1);
	if ((void *)(ports + 2) > end || sizeof(*ih) + sizeof(*in) + 4 > p->l4_len)
		return XDP_PASS;
	if (in->nexthdr != IPPROTO_TCP_ && in->nexthdr != IPPROTO_UDP_)
		return XDP_PASS;

	struct flow_key rk = {.sport = ports[1], .dport = ports[0], .proto = in->nexthdr};
	addr_from_v6(&rk.src, &in->daddr);
	addr_from_v6(&rk.dst, &in->saddr);
	struct icmp_target t = {};
	if (icmp_resolve(p, &rk, &t) < 0)
		return XDP_PASS;
	int verdict = XDP_DROP;
	const __u8 *mac = icmp_admit(p, &t, bytes, &verdict);
	if (!mac)
		return verdict;

	if (t.rewrite) {
		/* The ICMPv6 checksum covers the outer addresses (pseudo-
		 * header) and the quoted packet. */
		__u64 acc = csum_acc_addr(0, &p->key.src, t.osrc);
		acc = csum_acc_addr(acc, &p->key.dst, t.odst);
		acc = csum_acc_addr(acc, &rk.dst, t.isrc);
		acc = csum_acc_addr(acc, &rk.src, t.idst);
		acc = csum_acc2(acc, ports[0], t.isport);
		acc = csum_acc2(acc, ports[1], t.idport);
		__builtin_memcpy(&ip6->saddr, t.osrc->a, 16);
		__builtin_memcpy(&ip6->daddr, t.odst->a, 16);
		__builtin_memcpy(&in->saddr, t.isrc->a, 16);
		__builtin_memcpy(&in->daddr, t.idst->a, 16);
		ports[0] = t.isport;
		ports[1] = t.idport;
		csum_apply(&ih->csum, acc);
	}
	dec_ttl(p);
	set_macs(p, mac);
	return XDP_TX;
}

#endif /* WEFT_ICMP_H */
