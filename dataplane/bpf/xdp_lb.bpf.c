// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdp_lb.bpf.c: Weft's L4 load balancer. Per packet: parse -> service
 * lookup by (VIP, port, protocol) -> conntrack, then ct_new (flows that
 * sent one packet) -> on a miss, the flow's
 * owner if it is another node (flow.h), else the service's Maglev table ->
 * FullNAT or DSR rewrite -> XDP_TX. Replies of FullNAT flows (backend ->
 * local address) are rewritten back to VIP -> client, ICMP errors about
 * tracked flows are sent on (icmp.h), ARP requests for held local
 * addresses answered. Datagrams of migrated QUIC connections to an L7
 * proxy's HTTP/3 port go to the node their connection ID names (quic.h).
 * Anything else is passed to the stack untouched. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "csum.h"
#include "nat.h"
#include "icmp.h"
#include "flow.h"
#include "quic.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* drop_backend counts a drop against both the service and the backend. */
static __always_inline int drop_backend(struct lb_stats *ss, struct lb_stats *bs, enum lb_drop why)
{
	drop(bs, why);
	return drop(ss, why);
}

/* drop_if_vip drops (and counts globally) a packet it could not attribute
 * to a service if it is addressed to a VIP, and passes it otherwise: the
 * stack has nothing to do with L4 VIP traffic, and other traffic is not
 * ours to judge. */
static __always_inline int drop_if_vip(const struct pkt *p, enum lb_drop why)
{
	if (!bpf_map_lookup_elem(&vips, &p->key.dst))
		return XDP_PASS;
	__u32 zero = 0;
	return drop(bpf_map_lookup_elem(&global_stats, &zero), why);
}

/* vip_bit is address a's bit in vip_filter: a multiplicative hash of its
 * words as they lie in memory (the loader computes the same). */
static __always_inline __u32 vip_bit(const struct lb_addr *a)
{
	return ((a->a[0] ^ a->a[1] ^ a->a[2] ^ a->a[3]) * 0x9e3779b1u) >> 16;
}

/* maybe_vip reports whether a may be a VIP: false for most other
 * addresses, never for a VIP. */
static __always_inline int maybe_vip(const struct lb_addr *a)
{
	__u32 bit = vip_bit(a), word = bit / 64;
	__u64 *w = bpf_map_lookup_elem(&vip_filter, &word);
	return w && (*w >> (bit % 64)) & 1;
}

/* svc_of returns the service of ct, the conntrack entry of p, if its
 * svc_id still names the service of p's destination, else NULL. */
static __always_inline struct svc_value *svc_of(const struct ct_value *ct, const struct pkt *p)
{
	__u32 id = ct->svc_id;
	struct svc_entry *e = bpf_map_lookup_elem(&svc_by_id, &id);
	if (!e || e->key.port != p->key.dport || e->key.proto != p->key.proto ||
	    !addr_eq(&e->key.vip, &p->key.dst))
		return NULL;
	return &e->value;
}

/* to_this_host reports whether the frame is addressed to this node's MAC.
 * A router takes nothing else (RFC 1812 5.3.4): a unicast packet in a
 * broadcast, multicast or other host's frame reaches every LB node on the
 * segment, and each would forward a copy. */
static __always_inline int to_this_host(const struct pkt *p, const struct lb_config *cfg)
{
	const __u8 *d = p->eth->h_dest;
	return *(const __u32 *)d == *(const __u32 *)cfg->mac &&
	       *(const __u16 *)(d + 4) == *(const __u16 *)(cfg->mac + 4);
}

/* martian reports whether p's source is one no host sends from (RFC 1812
 * 5.3.7, RFC 4291 2.5): unspecified, loopback, multicast, reserved,
 * link-local (not forwarded beyond its link), IPv4-mapped on the wire;
 * or an address of this node or a FullNAT local address of the cluster,
 * which only a forger would send to a VIP from outside. Such a packet
 * opens no flow. */
static __always_inline int martian(const struct pkt *p)
{
	const __be32 *a = p->key.src.a;
	if (!p->is_v6) {
		__u32 s = bpf_ntohl(a[3]);
		__u32 top = s >> 24;
		if (top == 0 || top == 127 || top >= 224 || (s >> 16) == 0xa9fe)
			return 1;
	} else {
		__u32 w0 = bpf_ntohl(a[0]);
		if ((w0 >> 24) == 0xff || (w0 & 0xffc00000) == 0xfe800000)
			return 1;
		if (!a[0] && !a[1] &&
		    ((!a[2] && (!a[3] || a[3] == bpf_htonl(1))) || a[2] == bpf_htonl(0xffff)))
			return 1;
	}
	return bpf_map_lookup_elem(&own_addrs, &p->key.src) ||
	       bpf_map_lookup_elem(&snat_addrs, &p->key.src);
}

/* pick_backend fills ct with the backend the service's Maglev table gives
 * for the flow. Returns 0, or -1 if the table has no backend there. */
static __always_inline int pick_backend(const struct pkt *p, const struct svc_value *svc,
					__u32 hash, struct ct_value *ct)
{
	__u32 table = svc->table;
	void *ring = bpf_map_lookup_elem(&maglev_tables, &table);
	if (!ring)
		return -1;
	if (svc->sched == LB_SCHED_SOURCE_HASH)
		hash = source_hash(&p->key);
	else if (svc->flags & SVC_FRAGMENTS)
		hash = addr_hash(&p->key);
	__u32 slot = hash % ring_size;
	__u32 *id = bpf_map_lookup_elem(ring, &slot);
	if (!id || *id == NO_BACKEND)
		return -1;
	__u32 bid = *id;
	struct backend *be = bpf_map_lookup_elem(&backends, &bid);
	if (!be || !(be->flags & BACKEND_VALID))
		return -1;
	ct->backend = be->addr;
	ct->bport = svc->mode == LB_MODE_DSR ? p->key.dport : be->port;
	ct->backend_id = bid;
	ct->flags = CT_VALID;
	return 0;
}

/* ct_usable reports whether a conntrack entry still decides where p
 * goes: it is set and not expired, and, for a SYN (a new connection
 * reusing the tuple, or a retransmission), the flow is not closing and
 * its backend is still configured and takes new flows. A backend that
 * failed its health checks (or drains) would otherwise keep receiving
 * the SYNs of clients that reuse a tuple: a refused DSR connection never
 * closes its entry, and each SYN keeps it alive. Re-picking a
 * retransmitted SYN is harmless: the handshake starts over. */
static __always_inline int ct_usable(const struct pkt *p, const struct svc_value *svc,
				     const struct ct_value *ct, __u32 now)
{
	if (!ct || !(ct->flags & CT_VALID))
		return 0;
	if (now - ct->last_seen >
	    ct_timeout(p->key.proto, ct->flags & CT_ESTABLISHED, ct->flags & CT_CLOSING))
		return 0;
	if (!is_syn(p))
		return 1;
	if (ct->flags & CT_CLOSING)
		return 0;
	__u32 bid = ct->backend_id;
	struct backend *be = bpf_map_lookup_elem(&backends, &bid);
	return be && (be->flags & BACKEND_VALID) && (be->flags & BACKEND_ACTIVE) && addr_eq(&be->addr, &ct->backend) &&
	       (svc->mode == LB_MODE_DSR || be->port == ct->bport);
}

/* ct_next_hop returns the MAC to send a flow's packets to: the one its
 * entry cached while no neighbor nor the gateway has changed since
 * (lb_config.neigh_gen), else next_hop's, cached then. It saves the
 * neighbor lookup of every packet. The MAC is written before the
 * generation, so a CPU that sees the new generation sees its MAC. */
static __always_inline const __u8 *ct_next_hop(struct ct_value *ct, const struct lb_config *cfg,
					      int via_gw)
{
	if (ct->neigh_gen == cfg->neigh_gen && cfg->neigh_gen)
		return ct->mac;
	const __u8 *mac = next_hop(&ct->backend, via_gw);
	if (!mac)
		return NULL;
	__builtin_memcpy(ct->mac, mac, ETH_ALEN);
	asm volatile("" ::: "memory");
	ct->neigh_gen = cfg->neigh_gen;
	return ct->mac;
}

/* rev_touch refreshes, in map (nat_reverse or nat_new), the reverse
 * entry of FullNAT flow ct that p (a client packet) belongs to. */
static __always_inline void rev_touch(void *map, const struct pkt *p, const struct ct_value *ct,
				      __u32 now)
{
	struct flow_key rk = rev_key(ct, p->key.proto);
	struct nat_value *nv = bpf_map_lookup_elem(map, &rk);
	if (nv && addr_eq(&nv->client, &p->key.src) && nv->cport == p->key.sport)
		nat_touch(nv, p, 0, now);
}

/* sync_none is "no report" for ct_touch. */
#define SYNC_NONE 0xff

/* ct_touch records a packet of a tracked flow: its time, and the TCP
 * flags that set the entry's lifetime. Only changed fields are written.
 * A segment establishes or closes the flow only as its endpoint would
 * take it: with ACK set (RFC 9293 3.10.7.4: a segment without ACK is
 * dropped, RST aside) and a valid checksum, which is verified only then.
 * The sequence number is not checked (docs/decisions.md): a forger on
 * path with the tuple and a valid checksum can still close an idle flow,
 * as with IPVS and Katran. Returns -1 to drop a segment whose checksum
 * fails (its endpoint would discard it), else 0.
 * The flow is reported for sync when it becomes established or starts
 * closing, and every SYNC_REFRESH_SECS while it lives. A FullNAT flow's
 * reverse entry is refreshed too, but only when the second or the flags
 * change, so the hit path seldom touches the shared map. */
static __always_inline int ct_touch(const struct pkt *p, const struct svc_value *svc,
				    struct ct_value *ct, __u32 now)
{
	__u8 flags = ct->flags;
	if (p->key.proto == IPPROTO_TCP_) {
		__u8 f = p->tcp_flags;
		if ((f & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_)) == TCP_FLAG_ACK_)
			flags |= CT_ESTABLISHED;
		if ((f & TCP_FLAG_RST_) || (f & (TCP_FLAG_FIN_ | TCP_FLAG_ACK_)) == (TCP_FLAG_FIN_ | TCP_FLAG_ACK_))
			flags |= CT_CLOSING;
		if (flags != ct->flags && !l4_csum_ok(p))
			return -1;
	}
	if (flags == ct->flags && ct->last_seen == now)
		return 0;
	__u8 why = SYNC_NONE;
	if ((flags & CT_CLOSING) && !(ct->flags & CT_CLOSING))
		why = SYNC_CLOSING;
	else if ((flags & CT_ESTABLISHED) && !(ct->flags & CT_ESTABLISHED))
		why = SYNC_NEW;
	else if ((flags & CT_ESTABLISHED) && now - ct->synced >= SYNC_REFRESH_SECS)
		why = SYNC_REFRESH;
	ct->flags = flags;
	ct->last_seen = now;
	if (why != SYNC_NONE) {
		ct->synced = now;
		sync_report(p, svc, ct, why);
	}
	if (svc->mode == LB_MODE_FULLNAT)
		rev_touch(&nat_reverse, p, ct, now);
	return 0;
}

/* ct_new_touch records a packet of a new flow that leaves it new (a
 * retransmitted SYN, or a RST, which closes it): time and flags on its
 * entries in ct_new and, FullNAT, nat_new. A RST closes it only with a
 * valid checksum, as in ct_touch. Returns -1 to drop a RST whose checksum
 * fails, else 0. */
static __always_inline int ct_new_touch(const struct pkt *p, const struct svc_value *svc,
					struct ct_value *ct, __u32 now)
{
	__u8 flags = ct->flags;
	if (p->tcp_flags & TCP_FLAG_RST_)
		flags |= CT_CLOSING;
	if (flags != ct->flags && !l4_csum_ok(p))
		return -1;
	if (flags == ct->flags && ct->last_seen == now)
		return 0;
	ct->flags = flags;
	ct->last_seen = now;
	if (svc->mode == LB_MODE_FULLNAT)
		rev_touch(&nat_new, p, ct, now);
	return 0;
}

/* ct_promote moves a new flow that sent its second packet (TCP: its first
 * segment with ACK and neither SYN nor RST; UDP: any datagram) from ct_new
 * to conntrack, and a FullNAT flow's reverse entry from nat_new to
 * nat_reverse; the flow is then reported for sync (SYNC_NEW). ct is a
 * copy of the ct_new entry (the scratch entry's), updated. The reverse
 * entry is written anew from ct if a flood evicted it from nat_new; if an
 * established flow took its tuple meanwhile (its nat_new entry was
 * evicted and the port given again), the flow cannot be translated back.
 * Returns 0, or -1 then. */
static __always_inline int ct_promote(const struct pkt *p, const struct svc_value *svc,
				      struct scratch *sc, __u32 now)
{
	struct ct_value *ct = &sc->ct;
	ct->flags |= CT_ESTABLISHED;
	if (p->key.proto == IPPROTO_TCP_ && (p->tcp_flags & TCP_FLAG_FIN_))
		ct->flags |= CT_CLOSING;
	ct->last_seen = now;
	ct->synced = now;
	if (svc->mode == LB_MODE_FULLNAT) {
		sc->rk = rev_key(ct, p->key.proto);
		sc->nv = nat_entry(p, svc, ct, now);
		struct nat_value *nn = bpf_map_lookup_elem(&nat_new, &sc->rk);
		int ours = nn && nat_same_flow(nn, &sc->nv);
		if (ours)
			sc->nv.flags = nn->flags;
		if (nat_claim(&nat_reverse, &sc->rk, &sc->nv, now) < 0)
			return -1;
		if (ours)
			bpf_map_delete_elem(&nat_new, &sc->rk);
	}
	bpf_map_update_elem(&conntrack, &p->key, ct, BPF_ANY);
	bpf_map_delete_elem(&ct_new, &p->key);
	sync_report(p, svc, ct, SYNC_NEW);
	return 0;
}

/* new_flow_ok counts a new flow against its service's rate on this CPU
 * (svc_value.new_flow_rate a second; the loader gives each CPU its share
 * of the listener's rate) and reports whether it is within it. An
 * unlimited service costs no lookup. */
static __always_inline int new_flow_ok(const struct svc_value *svc, __u32 now)
{
	__u32 limit = svc->new_flow_rate;
	if (limit == 0)
		return 1;
	__u32 sid = svc->id;
	struct flow_rate *r = bpf_map_lookup_elem(&new_flow_rate, &sid);
	if (!r)
		return 1;
	if (r->second != now) {
		r->second = now;
		r->count = 0;
	}
	if (r->count >= limit)
		return 0;
	r->count++;
	return 1;
}

/* sample_new_flow puts one new flow in sample_every, opened or refused by
 * the rate (limited), in sample_ring: the clients and prefixes that open
 * the most flows to a VIP, a flood's among them, are found from these. */
static __always_inline void sample_new_flow(const struct pkt *p, __u8 limited)
{
	if (sample_every == 0 || bpf_get_prandom_u32() % sample_every != 0)
		return;
	struct flow_sample *s = bpf_ringbuf_reserve(&sample_ring, sizeof(*s), 0);
	if (!s) {
		struct flow_counters *fc = flow_counters_get();
		if (fc)
			fc->samples_lost++;
		return;
	}
	s->src = p->key.src;
	s->vip = p->key.dst;
	s->limited = limited;
	__builtin_memset(s->pad, 0, sizeof(s->pad));
	/* Waking the reader up costs more than the rest of a new flow (about
	 * 14 us a wakeup here): Go polls the ring instead, and is woken only
	 * when it is half full. */
	__u64 wake = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&sample_ring, BPF_RB_AVAIL_DATA) > SAMPLE_RING_BYTES / 2)
		wake = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(s, wake);
}

/* forward handles a packet to a service; ct is its conntrack entry, if
 * it has one. */
static __always_inline int forward(struct pkt *p, const struct svc_value *svc,
				   const struct lb_config *cfg, __u64 bytes, struct ct_value *ct)
{
	__u32 sid = svc->id;
	struct lb_stats *ss = bpf_map_lookup_elem(&svc_stats, &sid);

	if (!ttl_ok(p))
		return drop(ss, LB_DROP_TTL);

	__u32 now = bpf_ktime_get_coarse_ns() / 1000000000;
	int is_new = !ct_usable(p, svc, ct, now);
	/* stale: conntrack holds an entry of the tuple that no longer
	 * decides (a new flow replaces it). embryonic: the flow is in ct_new. */
	int stale = ct != NULL && is_new, embryonic = 0, promote = 0;
	if (is_new) {
		/* Established flows are looked up first: their hit path
		 * costs one lookup, as if ct_new did not exist. */
		struct ct_value *cn = bpf_map_lookup_elem(&ct_new, &p->key);
		if (ct_usable(p, svc, cn, now)) {
			ct = cn;
			is_new = 0;
			embryonic = 1;
		}
	}
	/* midflow: a TCP segment other than a SYN that missed the table. */
	int midflow = 0;
	const __u8 *mac;
	__u32 hash = 0;
	struct scratch *sc = NULL; /* promote: holds the flow's entry */

	/* An entry of a connection that closed a while ago, hit by a segment
	 * that is not a SYN, is most likely of a new connection on the same
	 * tuple that another node opened (ECMP moved the tuple since): that
	 * node reported it to the bucket's owners, whose copy replaces any
	 * old one, so the owner decides. Sent here, the segment would go out
	 * with the old connection's backend and source, and the server would
	 * reset the new one. */
	if (!is_new && (ct->flags & CT_CLOSING) && now - ct->last_seen > CT_CLOSED_GRACE) {
		int r = hand_to_owner(p, flow_hash(&p->key));
		if (r >= 0)
			return r;
	}

	if (is_new) {
		if (martian(p))
			return drop(ss, LB_DROP_MARTIAN);
		hash = flow_hash(&p->key);
		/* Only a SYN opens a TCP flow: a flood of other segments
		 * cannot evict established flows from the LRU. A segment that
		 * misses is most likely of a flow ECMP moved here from another
		 * node; its bucket's owner keeps a copy of the flow, so it is
		 * handed there (flow.h). A UDP datagram that misses may be of
		 * such a flow too, or new: the owner knows which, and opens it
		 * if it is new. Where this node is the owner, or the frame was
		 * handed here: a DSR segment goes to the backend the Maglev
		 * table gives, without an entry (every node's table gives the
		 * same); a FullNAT one cannot be taken over that way (another
		 * node's address is its source towards the backend): dropped. */
		int tcp_midflow = p->key.proto == IPPROTO_TCP_ && !is_syn(p);
		if (tcp_midflow || p->key.proto == IPPROTO_UDP_) {
			int r = hand_to_owner(p, hash);
			if (r >= 0)
				return r;
		}
		if (tcp_midflow) {
			if (svc->mode != LB_MODE_DSR)
				return drop(ss, LB_DROP_NO_CONN);
			midflow = 1;
		}
		if (!midflow && !new_flow_ok(svc, now)) {
			sample_new_flow(p, 1);
			return drop(ss, LB_DROP_NEW_FLOW_RATE);
		}
		__u32 zero = 0;
		struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
		if (!sc)
			return XDP_ABORTED;
		ct = &sc->ct;
		*ct = (struct ct_value){.svc_id = svc->id};
		if (pick_backend(p, svc, hash, ct) < 0)
			return drop(ss, LB_DROP_NO_BACKEND);
		ct->last_seen = now;
	} else if (embryonic && (p->key.proto == IPPROTO_UDP_ ||
				 (p->tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_ | TCP_FLAG_RST_)) == TCP_FLAG_ACK_)) {
		/* The flow's second packet: it moves to conntrack below, if
		 * its checksum is valid (it changes the flow's state). A copy,
		 * as the ct_new entry is deleted. */
		if (!l4_csum_ok(p))
			return drop(ss, LB_DROP_L4_CSUM);
		__u32 zero = 0;
		sc = bpf_map_lookup_elem(&scratch, &zero);
		if (!sc)
			return XDP_ABORTED;
		sc->ct = *ct;
		ct = &sc->ct;
		promote = 1;
	} else if (embryonic && ct_new_touch(p, svc, ct, now) < 0) {
		return drop(ss, LB_DROP_L4_CSUM);
	}

	__u32 bid = ct->backend_id;
	struct lb_stats *bs = bpf_map_lookup_elem(&backend_stats, &bid);
	mac = ct_next_hop(ct, cfg, svc->mode == LB_MODE_FULLNAT);
	if (!mac)
		return drop_backend(ss, bs, LB_DROP_NO_NEIGH);
	if (is_new && !midflow) {
		if (!l4_csum_ok(p))
			return drop_backend(ss, bs, LB_DROP_L4_CSUM);
		if (svc->mode == LB_MODE_FULLNAT && nat_alloc(p, hash, svc, ct, now) < 0)
			return drop_backend(ss, bs, LB_DROP_NAT_PORTS);
		/* A new flow goes to ct_new, whatever the rate: a flood
		 * evicts new flows only. It is reported for sync once it
		 * moves to conntrack, so a flood makes no sync traffic. */
		bpf_map_update_elem(&ct_new, &p->key, ct, BPF_ANY);
		if (stale)
			bpf_map_delete_elem(&conntrack, &p->key);
		if (ss)
			ss->new_flows++;
		if (bs)
			bs->new_flows++;
		sample_new_flow(p, 0);
	} else if (promote) {
		if (ct_promote(p, svc, sc, now) < 0)
			return drop_backend(ss, bs, LB_DROP_NAT_PORTS);
	} else if (!is_new && !embryonic && ct_touch(p, svc, ct, now) < 0) {
		return drop_backend(ss, bs, LB_DROP_L4_CSUM);
	}
	count(ss, bytes);
	count(bs, bytes);

	dec_ttl(p);
	if (svc->mode == LB_MODE_FULLNAT)
		rewrite_flow(p, &ct->local, ct->lport, &ct->backend, ct->bport);
	set_macs(p, mac);
	return XDP_TX;
}

/* reply_fragment handles a fragment of a UDP datagram that is no
 * service's: a FullNAT reply that came in fragments (a large DNS answer)
 * is translated back as reverse() translates a whole one. Its first
 * fragment, which has the ports, finds the flow's reverse entry and
 * leaves a copy in frag_replies under the datagram's identification; the
 * later ones find that copy, and only their addresses change (the UDP
 * checksum, in the first, covers the whole datagram). Like a whole reply,
 * a fragment of no tracked flow (or a later one ahead of its first) to a
 * local address another node holds is handed to it, and otherwise passed:
 * the node's own connections from a local address are the stack's. */
static __always_inline int reply_fragment(struct pkt *p, __u64 bytes)
{
	struct frag_key fk = {.src = p->key.src, .dst = p->key.dst, .id = p->frag_id, .proto = p->key.proto};
	__u32 now = bpf_ktime_get_coarse_ns() / 1000000000;
	struct nat_value *nv = NULL;
	if (p->frag == FRAG_FIRST) {
		nv = bpf_map_lookup_elem(&nat_reverse, &p->key);
		if (!nv)
			nv = bpf_map_lookup_elem(&nat_new, &p->key);
		if (nv) {
			nat_touch(nv, p, 1, now);
			bpf_map_update_elem(&frag_replies, &fk, nv, BPF_ANY);
		}
	} else {
		nv = bpf_map_lookup_elem(&frag_replies, &fk);
		if (nv && now - nv->last_seen > FRAG_TIMEOUT)
			nv = NULL;
	}
	if (!nv) {
		int r = hand_reply(p);
		return r >= 0 ? r : drop_if_vip(p, LB_DROP_FRAGMENT);
	}
	__u32 sid = nv->svc_id, bid = nv->backend_id;
	struct lb_stats *ss = bpf_map_lookup_elem(&svc_stats, &sid);
	if (!ttl_ok(p))
		return drop(ss, LB_DROP_TTL);
	const __u8 *mac = next_hop(&nv->client, 1);
	if (!mac)
		return drop(ss, LB_DROP_NO_NEIGH);
	count(ss, bytes);
	count(bpf_map_lookup_elem(&backend_stats, &bid), bytes);
	if (p->frag == FRAG_FIRST) {
		/* parse_l4 checked the header; the verifier needs it again,
		 * here where it cannot tell the protocol was UDP. */
		struct udphdr *uh = p->l4;
		if (!uh || (void *)(uh + 1) > p->data_end)
			return drop(ss, LB_DROP_MALFORMED);
		p->l4 = uh;
		p->l4_csum = &uh->check;
		dec_ttl(p);
		rewrite_flow(p, &nv->vip, nv->vport, &nv->client, nv->cport);
	} else {
		dec_ttl(p);
		rewrite_addrs(p, &nv->vip, &nv->client);
	}
	set_macs(p, mac);
	return XDP_TX;
}

/* fragment handles an IP fragment. One to a UDP service that forwards
 * fragments (SVC_FRAGMENTS, found under port 0: only a first fragment
 * has ports) goes to the backend its service's Maglev table gives for its
 * addresses, as every fragment of its datagram and every datagram of its
 * flow do, without a conntrack entry: DSR changes only its MACs and TTL,
 * so fragments need no reassembly. A UDP fragment that is no service's
 * may be of a FullNAT reply (reply_fragment). Any other fragment to a VIP
 * is dropped (LB_DROP_FRAGMENT); the rest are passed. */
static __always_inline int fragment(struct pkt *p, __u64 bytes)
{
	if (p->key.proto != IPPROTO_UDP_)
		return drop_if_vip(p, LB_DROP_FRAGMENT);
	struct svc_key sk = {.vip = p->key.dst, .proto = IPPROTO_UDP_};
	struct svc_value *svc = NULL;
	if (maybe_vip(&p->key.dst))
		svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return reply_fragment(p, bytes);
	if (!(svc->flags & SVC_FRAGMENTS) || svc->mode != LB_MODE_DSR)
		return drop_if_vip(p, LB_DROP_FRAGMENT);
	__u32 sid = svc->id;
	struct lb_stats *ss = bpf_map_lookup_elem(&svc_stats, &sid);
	if (!ttl_ok(p))
		return drop(ss, LB_DROP_TTL);
	if (martian(p))
		return drop(ss, LB_DROP_MARTIAN);
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return XDP_ABORTED;
	struct ct_value *ct = &sc->ct;
	*ct = (struct ct_value){};
	if (pick_backend(p, svc, 0, ct) < 0)
		return drop(ss, LB_DROP_NO_BACKEND);
	__u32 bid = ct->backend_id;
	struct lb_stats *bs = bpf_map_lookup_elem(&backend_stats, &bid);
	const __u8 *mac = next_hop(&ct->backend, 0);
	if (!mac)
		return drop_backend(ss, bs, LB_DROP_NO_NEIGH);
	count(ss, bytes);
	count(bs, bytes);
	dec_ttl(p);
	set_macs(p, mac);
	return XDP_TX;
}

/* reverse handles a packet that is no service's: a FullNAT reply (of an
 * established flow, nat_reverse, or a new one, nat_new) is rewritten back
 * to VIP -> client; one to a cluster local address this node has no entry
 * for is handed to the address's holder (flow.h);
 * anything else is passed. */
static __always_inline int reverse(struct pkt *p, __u64 bytes)
{
	/* Established flows first, then new ones (their SYN-ACKs). */
	struct nat_value *nv = bpf_map_lookup_elem(&nat_reverse, &p->key);
	if (!nv)
		nv = bpf_map_lookup_elem(&nat_new, &p->key);
	if (!nv) {
		int r = hand_reply(p);
		return r >= 0 ? r : XDP_PASS;
	}
	__u32 sid = nv->svc_id, bid = nv->backend_id;
	struct lb_stats *ss = bpf_map_lookup_elem(&svc_stats, &sid);
	if (!ttl_ok(p))
		return drop(ss, LB_DROP_TTL);
	const __u8 *mac = next_hop(&nv->client, 1);
	if (!mac)
		return drop(ss, LB_DROP_NO_NEIGH);
	nat_touch(nv, p, 1, bpf_ktime_get_coarse_ns() / 1000000000);
	count(ss, bytes);
	count(bpf_map_lookup_elem(&backend_stats, &bid), bytes);
	dec_ttl(p);
	rewrite_flow(p, &nv->vip, nv->vport, &nv->client, nv->cport);
	set_macs(p, mac);
	return XDP_TX;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	struct pkt p = {};
	__u64 bytes = ctx->data_end - ctx->data;

	int parsed = parse_packet(ctx, &p);
	if (parsed == PARSE_OTHER)
		return XDP_PASS;
	if (parsed == PARSE_ARP)
		return handle_arp(&p);
	__u32 zero = 0;
	struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !to_this_host(&p, cfg))
		return drop_if_vip(&p, LB_DROP_ETH_DST);
	switch (parsed) {
	case PARSE_OK:
		break;
	case PARSE_ICMP:
		if (p.is_v6)
			return handle_icmp6(&p, bytes);
		return handle_icmp4(&p, bytes);
	case PARSE_FRAGMENT:
		return fragment(&p, bytes);
	default:
		return drop_if_vip(&p, p.why);
	}

	if (!maybe_vip(&p.key.dst))
		return reverse(&p, bytes);
	/* Conntrack first: a tracked flow's packet finds its service by the
	 * entry's id, an array lookup, and so costs one hash lookup. */
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &p.key);
	struct svc_value *svc = ct ? svc_of(ct, &p) : NULL;
	if (!svc) {
		struct svc_key sk = {
			.vip = p.key.dst,
			.port = p.key.dport,
			.proto = p.key.proto,
		};
		svc = bpf_map_lookup_elem(&services, &sk);
		/* No flow of an L7 proxy's HTTP/3 port is tracked: its entry is
		 * only ever found here. */
		if (svc && (svc->flags & SVC_QUIC))
			return quic_route(&p);
	}
	if (svc)
		return forward(&p, svc, cfg, bytes, ct);
	return reverse(&p, bytes);
}
