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
	PARSE_FRAGMENT = 3,  /* IP fragment (any), pkt.key.dst is set */
	PARSE_MALFORMED = 4, /* L3 parsed, L4 header truncated; pkt.key.dst is set */
	PARSE_ARP = 5,       /* ARP, l3 points at its header (not checked) */
};

/* pkt is a parsed frame. */
struct pkt {
	struct ethhdr *eth;
	void *l3;             /* IPv4 or IPv6 header, per is_v6 */
	void *data_end;       /* for the re-checks of pkt_ip4 and pkt_ip6 */
	void *l4;             /* TCP, UDP or ICMP header */
	__sum16 *l4_csum;     /* TCP or UDP checksum field */
	struct flow_key key;  /* the 5-tuple; v4 addresses IPv4-mapped */
	__u8 is_v6;
	__u8 tcp_flags;       /* TCP flags byte (FIN=0x01, SYN=0x02, RST=0x04, ACK=0x10) */
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

/* parse_l4 reads the L4 header at l4 for proto, filling the ports. The
 * header must lie within the IP payload, which ends at l3_end (<= data_end):
 * one in the Ethernet padding is not a header. */
static __always_inline int parse_l4(struct pkt *p, void *l4, void *l3_end, void *data_end,
				    __u8 proto)
{
	p->l4 = l4;
	p->key.proto = proto;
	if (proto == IPPROTO_TCP_) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end || (void *)(th + 1) > l3_end || th->doff < 5)
			return PARSE_MALFORMED;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->l4_csum = &th->check;
		p->tcp_flags = ((__u8 *)th)[13];
		return PARSE_OK;
	}
	if (proto == IPPROTO_UDP_) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end || (void *)(uh + 1) > l3_end)
			return PARSE_MALFORMED;
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		p->l4_csum = &uh->check;
		return PARSE_OK;
	}
	if (proto == IPPROTO_ICMP_ || proto == IPPROTO_ICMPV6_) {
		if (l4 + 8 > data_end)
			return PARSE_OTHER;
		return PARSE_ICMP;
	}
	return PARSE_OTHER;
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
		if (bpf_ntohs(ip->tot_len) < hlen || cur + bpf_ntohs(ip->tot_len) > data_end)
			return PARSE_MALFORMED;
		/* MF set or a non-zero offset: any fragment. */
		if (ip->frag_off & bpf_htons(0x3fff))
			return PARSE_FRAGMENT;
		return parse_l4(p, cur + hlen, cur + bpf_ntohs(ip->tot_len), data_end, ip->protocol);
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
		if ((void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > data_end)
			return PARSE_MALFORMED;
		if (ip6->nexthdr == IPPROTO_FRAGMENT_)
			return PARSE_FRAGMENT;
		return parse_l4(p, ip6 + 1, (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len), data_end,
				ip6->nexthdr);
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

#endif /* WEFT_PARSE_H */
