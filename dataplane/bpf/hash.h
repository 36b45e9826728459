/* hash.h: the flow hash that picks a backend and a FullNAT port. It is
 * MurmurHash3's 32-bit mixing over the big-endian words of the 5-tuple, so
 * every node (and the Go mirror, xdp.FlowHash) gets the same value. */
#ifndef WEFT_HASH_H
#define WEFT_HASH_H

#include <bpf/bpf_endian.h>
#include "structs.h"

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 hash_word(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 hash_final(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 hash_addr(__u32 h, const struct lb_addr *a)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = hash_word(h, bpf_ntohl(a->a[i]));
	return h;
}

/* flow_hash hashes the 5-tuple. */
static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = hash_addr(FLOW_HASH_SEED, &k->src);
	h = hash_addr(h, &k->dst);
	h = hash_word(h, ((__u32)bpf_ntohs(k->sport) << 16) | bpf_ntohs(k->dport));
	h = hash_word(h, k->proto);
	return hash_final(h, 40);
}

/* source_hash hashes the source address only (source-hash services). */
static __always_inline __u32 source_hash(const struct flow_key *k)
{
	return hash_final(hash_addr(FLOW_HASH_SEED, &k->src), 16);
}

/* addr_hash hashes the addresses and protocol (services that forward
 * fragments, SVC_FRAGMENTS). */
static __always_inline __u32 addr_hash(const struct flow_key *k)
{
	__u32 h = hash_addr(FLOW_HASH_SEED, &k->src);
	h = hash_addr(h, &k->dst);
	h = hash_word(h, k->proto);
	return hash_final(h, 36);
}

/* nat_hash derives the FullNAT port choice from a flow hash, so that the
 * port does not follow the backend or local-address choice. */
static __always_inline __u32 nat_hash(__u32 flow)
{
	return hash_final(flow ^ NAT_HASH_SEED, 4);
}

#endif /* WEFT_HASH_H */
