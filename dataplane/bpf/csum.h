/* csum.h: incremental Internet checksum updates (RFC 1624, eqn. 3:
 * HC' = ~(~HC + ~m + m')). The one's-complement sum does not depend on
 * byte order, so fields are summed as they lie in the packet. */
#ifndef WEFT_CSUM_H
#define WEFT_CSUM_H

#include <linux/types.h>

/* csum_fold folds a 64-bit one's-complement accumulator to 16 bits. */
static __always_inline __u16 csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* csum_acc4 adds to acc the change of a 32-bit field from old to new. */
static __always_inline __u64 csum_acc4(__u64 acc, __be32 old, __be32 new)
{
	return acc + (__u32)~old + (__u32) new;
}

/* csum_acc2 adds to acc the change of a 16-bit field from old to new. */
static __always_inline __u64 csum_acc2(__u64 acc, __be16 old, __be16 new)
{
	return acc + (__u16)~old + (__u16) new;
}

/* csum_acc_addr adds to acc the change of a 16-byte address. */
static __always_inline __u64 csum_acc_addr(__u64 acc, const struct lb_addr *old,
					   const struct lb_addr *new)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		acc = csum_acc4(acc, old->a[i], new->a[i]);
	return acc;
}

/* csum_apply applies the accumulated change acc to the checksum *sum. */
static __always_inline void csum_apply(__sum16 *sum, __u64 acc)
{
	*sum = ~csum_fold(acc + (__u16)~*sum);
}

#endif /* WEFT_CSUM_H */
