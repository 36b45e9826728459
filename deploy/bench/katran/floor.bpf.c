// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The harness floor of deploy/bench/katran: the least an XDP load balancer
// does per packet, one per-CPU array lookup (a counter) and XDP_TX. Weft's
// own code, not Katran's; timed on the same BPF_PROG_TEST_RUN harness.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} packets SEC(".maps");

SEC("xdp")
int floor_tx(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&packets, &key);

	if (!n)
		return XDP_ABORTED;
	// Counted so that the benchmark can check every run took this path.
	*n += 1;
	return XDP_TX;
}

char __license[] SEC("license") = "Dual BSD/GPL";
