/* parse.h: header parsing. parse_packet fills a struct pkt with the
 * positions of the headers and the flow's 5-tuple, checking every header
 * against data_end so later code may use the pointers. */
#ifndef WEFT_PARSE_H
#define WEFT_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "structs.h"
#include "csum.h"

/* vlan_hdr is an 802.1Q/802.1ad tag after the MAC addresses. */
struct vlan_hdr {
	__be16 tci;
	__be16 proto; /* network order; the next EtherType */
};

/* parse_result says what parse_packet found. */
enum parse_result {
	PARSE_OK = 0,        /* TCP or UDP, 5-tuple in pkt.key */
	PARSE_ICMP = 1,      /* ICMP or ICMPv6, l4 points at its header */
	PARSE_OTHER = 2,     /* not for us: pass */
	PARSE_FRAGMENT = 3,  /* IP fragment (any): pkt.key has addresses and protocol, no ports */
	PARSE_MALFORMED = 4, /* L3 parsed, then a header a router or host would drop;
			      * pkt.key.dst and pkt.why are set */
	PARSE_ARP = 5,       /* ARP, l3 points at its header (not checked) */
};

/* pkt is a parsed frame. */
struct pkt {
	struct xdp_md *ctx;
	struct ethhdr *eth;
	void *l3;             /* IPv4 or IPv6 header, per is_v6 */
	void *data_end;       /* for the re-checks of pkt_ip4 and pkt_ip6 */
	void *l4;             /* TCP, UDP or ICMP header */
	__sum16 *l4_csum;     /* TCP or UDP checksum field */
	struct flow_key key;  /* the 5-tuple; v4 addresses IPv4-mapped */
	__u16 l4_len;         /* bytes from l4 to the end of the IP datagram */
	__u8 is_v6;
	__u8 tcp_flags;       /* TCP flags byte (FIN=0x01, SYN=0x02, RST=0x04, ACK=0x10) */
	__u8 why;             /* enum lb_drop, for PARSE_MALFORMED */
	__u8 frag;            /* enum frag_kind */
	__u32 frag_id;        /* network order; a fragment's identification */
};

/* frag_kind says which fragment of its datagram a packet is. A first
 * fragment's L4 header is parsed (its ports are in key); a later one has
 * none. */
enum frag_kind {
	FRAG_NONE = 0,
	FRAG_FIRST = 1,
	FRAG_LATER = 2,
};

#define TCP_FLAG_FIN_ 0x01
#define TCP_FLAG_SYN_ 0x02
#define TCP_FLAG_RST_ 0x04
#define TCP_FLAG_ACK_ 0x10

/* is_syn reports whether p opens a TCP connection (SYN without ACK). */
static __always_inline int is_syn(const struct pkt *p)
{
	return p->key.proto == IPPROTO_TCP_ &&
	       (p->tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_)) == TCP_FLAG_SYN_;
}

/* addr_from_v4 stores an IPv4 address IPv4-mapped. */
static __always_inline void addr_from_v4(struct lb_addr *a, __be32 v4)
{
	a->a[0] = 0;
	a->a[1] = 0;
	a->a[2] = bpf_htonl(0xffff);
	a->a[3] = v4;
}

/* addr_from_v6 copies an IPv6 address. */
static __always_inline void addr_from_v6(struct lb_addr *a, const struct in6_addr *v6)
{
	__builtin_memcpy(a->a, v6->in6_u.u6_addr32, 16);
}

/* malformed records why a frame is dropped if it is to a VIP. */
static __always_inline int malformed(struct pkt *p, enum lb_drop why)
{
	p->why = why;
	return PARSE_MALFORMED;
}

/* parse_l4 reads the L4 header at l4 for proto, filling the ports. The
 * header must lie within the IP payload of l4_len bytes (<= data_end): one
 * in the Ethernet padding is not a header. What the receiving host would
 * discard whatever its state is malformed: a TCP data offset beyond the
 * segment, flags no endpoint accepts (RFC 9293 3.10.7: SYN with FIN or
 * RST; neither SYN, ACK nor RST), a UDP length other than the payload's, a
 * zero IPv6 UDP checksum (RFC 8200 8.1). */
static __always_inline int parse_l4(struct pkt *p, void *l4, __u32 l4_len, void *data_end,
				    __u8 proto)
{
	p->l4 = l4;
	p->l4_len = l4_len;
	p->key.proto = proto;
	if (proto == IPPROTO_TCP_) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end || l4_len < sizeof(*th) || th->doff < 5 ||
		    th->doff * 4 > l4_len)
			return malformed(p, LB_DROP_MALFORMED);
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->l4_csum = &th->check;
		__u8 f = ((__u8 *)th)[13];
		if (((f & TCP_FLAG_SYN_) && (f & (TCP_FLAG_FIN_ | TCP_FLAG_RST_))) ||
		    !(f & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_ | TCP_FLAG_RST_)))
			return malformed(p, LB_DROP_TCP_FLAGS);
		/* Loaded again, so that what the verifier learnt of f in the
		 * checks above does not split its states in all that follows. */
		p->tcp_flags = *(volatile __u8 *)&((__u8 *)th)[13];
		return PARSE_OK;
	}
	if (proto == IPPROTO_UDP_) {
		struct udphdr *uh = l4;
		/* A first fragment's UDP length is its whole datagram's. */
		__u32 ulen = bpf_ntohs(uh->len);
		if ((void *)(uh + 1) > data_end || l4_len < sizeof(*uh) ||
		    (p->frag ? ulen <= l4_len : ulen != l4_len))
			return malformed(p, LB_DROP_MALFORMED);
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		p->l4_csum = &uh->check;
		if (p->is_v6 && uh->check == 0)
			return malformed(p, LB_DROP_L4_CSUM);
		return PARSE_OK;
	}
	if (proto == IPPROTO_ICMP_ || proto == IPPROTO_ICMPV6_) {
		if (l4 + 8 > data_end || l4_len < 8)
			return PARSE_OTHER;
		return PARSE_ICMP;
	}
	return PARSE_OTHER;
}

/* first_fragment parses the L4 header of a datagram's first fragment:
 * PARSE_FRAGMENT with its ports in key if it is TCP or UDP and sane,
 * PARSE_MALFORMED if not sane. */
static __always_inline int first_fragment(struct pkt *p, void *l4, __u32 l4_len, void *data_end, __u8 proto)
{
	int r = parse_l4(p, l4, l4_len, data_end, proto);
	return r == PARSE_MALFORMED ? r : PARSE_FRAGMENT;
}

/* ip4_options_sum returns the one's-complement sum of the option words of
 * the IPv4 header of hlen bytes (20-60) at off in the frame, or -1 if
 * they do not lie in it. A global function, verified once (see
 * csum_segment), so its twenty branches on hlen do not split the states
 * of all that follows. */
__noinline long ip4_options_sum(struct xdp_md *ctx, __u32 off, __u32 hlen)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u16 *w = data + (off & 63);
	__u64 sum = 0;
	/* Constant offsets, which the verifier can check. */
#pragma unroll
	for (int i = 10; i < 30; i++) {
		if (i * 2 < hlen) {
			if ((void *)(w + i + 1) > end)
				return -1;
			sum += w[i];
		}
	}
	return csum_fold(sum);
}

/* ip4_csum_ok reports whether IPv4 header ip of hlen bytes, at off in the
 * frame, has a valid checksum; a router drops one that fails (RFC 1812
 * 5.2.2), and forwarding it would send on a corrupt header. The fixed
 * header is summed here, options (rare) by ip4_options_sum. */
static __always_inline int ip4_csum_ok(struct xdp_md *ctx, struct iphdr *ip, __u32 off, __u32 hlen)
{
	__u16 *w = (void *)ip;
	__u64 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	if (hlen > sizeof(*ip)) {
		long opts = ip4_options_sum(ctx, off, hlen);
		if (opts < 0)
			return 0;
		sum += opts;
	}
	return csum_fold(sum) == 0xffff;
}

#define IPOPT_EOL_ 0
#define IPOPT_NOP_ 1
#define IPOPT_LSRR_ 131
#define IPOPT_SSRR_ 137

/* opt_walk is the state of ip4_options_ok's walk. */
struct opt_walk {
	struct xdp_md *ctx;
	__u32 off; /* of the options in the frame */
	__u32 len; /* bytes of options */
	__u32 at;  /* offset of the next option in the options */
	int ok;    /* the result, once done */
};

/* opt_step looks at the option at w->at (a bpf_loop callback: verified
 * once, however many options there are). Returns 1 when the walk is done. */
static long opt_step(__u64 i, void *arg)
{
	struct opt_walk *w = arg;
	void *data = (void *)(long)w->ctx->data;
	void *end = (void *)(long)w->ctx->data_end;
	if (w->at >= w->len) {
		w->ok = 1;
		return 1;
	}
	/* The masks, no-ops on an IPv4 header, bound the offsets. */
	__u8 *o = data + (w->off & 127) + (w->at & 63);
	if ((void *)(o + 2) > end)
		return 1;
	if (o[0] == IPOPT_EOL_) {
		w->ok = 1;
		return 1;
	}
	if (o[0] == IPOPT_NOP_) {
		w->at++;
		return 0;
	}
	if (o[0] == IPOPT_LSRR_ || o[0] == IPOPT_SSRR_ || w->at + 1 >= w->len || o[1] < 2 ||
	    w->at + o[1] > w->len)
		return 1;
	w->at += o[1];
	return 0;
}

/* ip4_options_ok walks the len bytes of IPv4 options at off in the frame
 * (RFC 791). A source route is refused, as most routers do (RFC 7126 4.3,
 * 4.4): the balancer rewrites the destination, so the route it carries
 * would be followed to the wrong hop and the L4 checksum, which covers the
 * final destination, would be wrong. Other options are forwarded; one
 * whose length is short or runs past the header is malformed. */
static __always_inline int ip4_options_ok(struct xdp_md *ctx, __u32 off, __u32 len)
{
	struct opt_walk w = {.ctx = ctx, .off = off, .len = len};
	bpf_loop(40, opt_step, &w, 0);
	return w.ok;
}

/* parse_packet parses Ethernet (with up to MAX_VLAN_TAGS tags), IPv4 (with
 * options) or IPv6, and TCP, UDP or ICMP. IPv6 extension headers other
 * than a fragment header are not walked: such packets are PARSE_OTHER. */
static __always_inline int parse_packet(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cur = data + sizeof(*eth);

	if (cur > data_end)
		return PARSE_OTHER;
	p->ctx = ctx;
	p->eth = eth;
	p->data_end = data_end;
	__be16 proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		struct vlan_hdr *vh = cur;
		if ((void *)(vh + 1) > data_end)
			return PARSE_OTHER;
		proto = vh->proto;
		cur = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_ARP_)) {
		p->l3 = cur;
		return PARSE_ARP;
	}
	if (proto == bpf_htons(ETH_P_IP_)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			return PARSE_OTHER;
		if (ip->version != 4 || ip->ihl < 5)
			return PARSE_OTHER;
		__u32 hlen = ip->ihl * 4;
		if (cur + hlen > data_end)
			return PARSE_OTHER;
		p->l3 = ip;
		addr_from_v4(&p->key.src, ip->saddr);
		addr_from_v4(&p->key.dst, ip->daddr);
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (tot < hlen || cur + tot > data_end)
			return malformed(p, LB_DROP_MALFORMED);
		if (!ip4_csum_ok(ctx, ip, (long)ip - (long)data, hlen))
			return malformed(p, LB_DROP_IP_CSUM);
		if (hlen > sizeof(*ip) &&
		    !ip4_options_ok(ctx, (long)(ip + 1) - (long)data, hlen - sizeof(*ip)))
			return malformed(p, LB_DROP_IP_OPTIONS);
		/* MF set or a non-zero offset: any fragment. */
		if (ip->frag_off & bpf_htons(0x3fff)) {
			p->key.proto = ip->protocol;
			p->frag_id = ip->id;
			p->frag = FRAG_LATER;
			if (ip->frag_off & bpf_htons(0x1fff))
				return PARSE_FRAGMENT;
			p->frag = FRAG_FIRST;
			return first_fragment(p, cur + hlen, tot - hlen, data_end, ip->protocol);
		}
		return parse_l4(p, cur + hlen, tot - hlen, data_end, ip->protocol);
	}
	if (proto == bpf_htons(ETH_P_IPV6_)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > data_end)
			return PARSE_OTHER;
		if (ip6->version != 6)
			return PARSE_OTHER;
		p->l3 = ip6;
		p->is_v6 = 1;
		addr_from_v6(&p->key.src, &ip6->saddr);
		addr_from_v6(&p->key.dst, &ip6->daddr);
		__u32 plen = bpf_ntohs(ip6->payload_len);
		if ((void *)(ip6 + 1) + plen > data_end)
			return malformed(p, LB_DROP_MALFORMED);
		if (ip6->nexthdr == IPPROTO_FRAGMENT_) {
			/* The Fragment header (RFC 8200 4.5): its first byte
			 * is the next header. */
			__u8 *fh = (void *)(ip6 + 1);
			if ((void *)(fh + 8) > data_end || plen < 8)
				return malformed(p, LB_DROP_MALFORMED);
			p->key.proto = fh[0];
			p->frag_id = *(__u32 *)(fh + 4);
			p->frag = FRAG_LATER;
			if (*(__be16 *)(fh + 2) & bpf_htons(0xfff8))
				return PARSE_FRAGMENT;
			p->frag = FRAG_FIRST;
			return first_fragment(p, fh + 8, plen - 8, data_end, fh[0]);
		}
		return parse_l4(p, ip6 + 1, plen, data_end, ip6->nexthdr);
	}
	return PARSE_OTHER;
}

/* pkt_ip4 and pkt_ip6 return the L3 header. parse_packet checked its
 * bounds already; the check is repeated because the verifier does not
 * keep the link between is_v6 and which header was checked. */
static __always_inline struct iphdr *pkt_ip4(const struct pkt *p)
{
	struct iphdr *ip = p->l3;
	if ((void *)(ip + 1) > p->data_end)
		return NULL;
	return ip;
}

static __always_inline struct ipv6hdr *pkt_ip6(const struct pkt *p)
{
	struct ipv6hdr *ip6 = p->l3;
	if ((void *)(ip6 + 1) > p->data_end)
		return NULL;
	return ip6;
}

/* csum_segment reports whether the one's-complement sum of seed (the
 * pseudo-header's) and the len bytes at off in the frame is all ones: a
 * valid TCP or UDP checksum. A global function, so that the verifier
 * checks its loops once rather than at every caller. */
__noinline int csum_segment(struct xdp_md *ctx, __u32 off, __u32 len, __u32 seed)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (len > CSUM_BLOCKS * CSUM_BLOCK)
		return 1;
	/* The mask, a no-op on the offsets of a frame in one page (XDP
	 * without multi-buffer), bounds off for the verifier. */
	__u8 *cur = data + (off & 0xfff);
	__u64 sum = seed;
	for (int i = 0; i < CSUM_BLOCKS; i++) {
		if (len < CSUM_BLOCK)
			break;
		/* Keeps clang from turning the bounds checks into arithmetic
		 * on end - cur, which the verifier cannot follow. */
		asm volatile("" : "+r"(cur));
		if ((void *)(cur + CSUM_BLOCK) > end)
			return 0;
		sum += (__u32)bpf_csum_diff(NULL, 0, (__be32 *)cur, CSUM_BLOCK, 0);
		cur += CSUM_BLOCK;
		len -= CSUM_BLOCK;
	}
	for (int i = 0; i < CSUM_BLOCK / 4; i++) {
		if (len < 4)
			break;
		asm volatile("" : "+r"(cur));
		if ((void *)(cur + 4) > end)
			return 0;
		sum += *(__u32 *)cur;
		cur += 4;
		len -= 4;
	}
	if (len >= 2) {
		if ((void *)(cur + 2) > end)
			return 0;
		sum += *(__u16 *)cur;
		cur += 2;
		len -= 2;
	}
	if (len) {
		if ((void *)(cur + 1) > end)
			return 0;
		/* The odd byte is the first of a word padded with zero. */
		__u16 last = 0;
		*(__u8 *)&last = *cur;
		sum += last;
	}
	return csum_fold(sum) == 0xffff;
}

/* l4_csum_ok reports whether the TCP or UDP checksum of p is valid (an
 * IPv4 UDP checksum of zero is none, and valid). It reads the whole
 * segment, so the program calls it only for packets that would create or
 * change a flow's entry: a host discards a segment that fails it, and a
 * discarded segment must not open, establish or close a flow here. */
static __always_inline int l4_csum_ok(const struct pkt *p)
{
	__u64 sum = 0;
	if (p->is_v6) {
		struct ipv6hdr *ip6 = pkt_ip6(p);
		if (!ip6)
			return 0;
#pragma unroll
		for (int i = 0; i < 4; i++)
			sum += (__u64)ip6->saddr.in6_u.u6_addr32[i] + ip6->daddr.in6_u.u6_addr32[i];
	} else {
		struct iphdr *ip = pkt_ip4(p);
		if (!ip)
			return 0;
		if (p->key.proto == IPPROTO_UDP_ && *p->l4_csum == 0)
			return 1;
		sum = (__u64)ip->saddr + ip->daddr;
	}
	sum += bpf_htons((__u16)p->key.proto) + bpf_htons(p->l4_len);
	__u32 off = (long)p->l4 - (long)p->ctx->data;
	return csum_segment(p->ctx, off, p->l4_len, csum_fold(sum));
}

#endif /* WEFT_PARSE_H */
