/* maps.h: the program's maps. The Go loader writes every map but the stats
 * and sync_ring, which only the program writes; conntrack and nat_reverse
 * are written by the program and, with flows synced from other nodes, by
 * Go. */
#ifndef WEFT_MAPS_H
#define WEFT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"

/* Maglev table size M; the loader overrides it before load, together with
 * the max_entries of maglev_ring. */
volatile const __u32 ring_size = MAGLEV_RING_SIZE;

/* lb_drop_max is never read: it puts enum lb_drop in BTF, so that bpf2go
 * generates the Go names of the drop reasons. */
volatile const enum lb_drop lb_drop_max = LB_DROP_MAX;

/* services: (VIP, port, protocol) -> configuration; a service that
 * forwards fragments is also under (VIP, 0, UDP), hence the room. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} services SEC(".maps");

/* svc_by_id: svc_value.id -> the service, written with services: a
 * packet that hits conntrack finds its service here, by its entry's
 * svc_id, without a hash lookup. A key of zeros is no service. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct svc_entry);
} svc_by_id SEC(".maps");

/* vip_filter: a bit per hash of a VIP address (vip_bit), set while the
 * address has a service. A packet whose destination's bit is clear is no
 * service's, which saves a replying backend's or the host's packets the
 * lookups in conntrack and services. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} vip_filter SEC(".maps");

/* vips: addresses that have at least one service -> number of services.
 * Fragments and unparsable L4 headers to these are dropped, not passed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct lb_addr);
	__type(value, __u32);
} vips SEC(".maps");

/* backends: backend id -> address and port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

/* maglev_ring is the template of one Maglev table: slot -> backend id. */
struct maglev_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAGLEV_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
};

/* maglev_tables: table slot -> Maglev table. A service names its slot; a
 * new table is written into a free slot and the service switched to it
 * with one update of services. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_TABLES);
	__type(key, __u32);
	__array(values, struct maglev_ring);
} maglev_tables SEC(".maps");

/* conntrack: client flow -> backend (and FullNAT source). Shared by all
 * CPUs, not per-CPU: a per-CPU table relies on RSS keeping a flow on one
 * CPU, which veth (the lab) and NICs rehashing after a queue change do not;
 * a flow seen on another CPU would miss and, not being a SYN, be dropped
 * (docs/decisions.md). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNTRACK_SIZE);
	__type(key, struct flow_key);
	__type(value, struct ct_value);
} conntrack SEC(".maps");

/* nat_reverse: reply flow (backend -> local address) -> client flow. Not
 * per-CPU: replies come in on whatever CPU the backend's flow hashes to. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNTRACK_SIZE);
	__type(key, struct flow_key);
	__type(value, struct nat_value);
} nat_reverse SEC(".maps");

/* ct_new: client flow -> backend, for flows that sent one packet only (a
 * TCP SYN, its retransmissions, a first UDP datagram): kept apart from
 * conntrack so that a flood of new flows (spoofed SYNs) evicts other new
 * flows only, never established ones. A flow moves to conntrack on its
 * second packet (TCP: the first segment other than a SYN or RST). Sized
 * by the loader (Options.NewConnTrackSize). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_NEW_SIZE);
	__type(key, struct flow_key);
	__type(value, struct ct_value);
} ct_new SEC(".maps");

/* nat_new: nat_reverse of the FullNAT flows in ct_new. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_NEW_SIZE);
	__type(key, struct flow_key);
	__type(value, struct nat_value);
} nat_new SEC(".maps");

/* new_flow_rate: service id -> this CPU's new flows in the current second,
 * against svc_value.new_flow_rate. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct flow_rate);
} new_flow_rate SEC(".maps");

/* frag_replies: a FullNAT reply datagram that came in fragments -> its
 * flow's reverse entry, copied when its first fragment (the one with
 * ports) was translated, so that the later ones are too. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAG_TABLE_SIZE);
	__type(key, struct frag_key);
	__type(value, struct nat_value);
} frag_replies SEC(".maps");

/* local_addrs: FullNAT source addresses; IPv4 ones at [0, n_local4), IPv6
 * ones at [MAX_LOCAL_ADDRS, MAX_LOCAL_ADDRS + n_local6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_LOCAL_ADDRS);
	__type(key, __u32);
	__type(value, struct lb_addr);
} local_addrs SEC(".maps");

/* neighbors: next-hop address -> MAC, for backends and clients on link. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, struct lb_addr);
	__type(value, struct neigh);
} neighbors SEC(".maps");

/* config: the one lb_config. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} config SEC(".maps");

/* flow_owners: flow bucket -> the peer that keeps the bucket's flows, or
 * TARGET_SELF. A TCP segment other than a SYN, or a UDP datagram, that
 * misses conntrack is handed to that peer (ECMP moved its flow here). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOW_BUCKETS);
	__type(key, __u32);
	__type(value, __u32);
} flow_owners SEC(".maps");

/* peers: peer index -> MAC on the shared segment. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PEERS);
	__type(key, __u32);
	__type(value, struct peer);
} peers SEC(".maps");

/* peer_macs: MACs of the peers -> index. A frame from one was handed over
 * already and is never handed on (no loops). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PEERS);
	__type(key, struct peer_mac);
	__type(value, __u32);
} peer_macs SEC(".maps");

/* snat_addrs: the cluster's FullNAT local addresses -> where replies that
 * miss nat_reverse go, and whether this node answers ARP for them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SNAT_ADDRS);
	__type(key, struct lb_addr);
	__type(value, struct snat_value);
} snat_addrs SEC(".maps");

/* own_addrs: this node's interface addresses -> 1. A packet from one of
 * them that arrives on the wire is forged: it opens no flow. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OWN_ADDRS);
	__type(key, struct lb_addr);
	__type(value, __u8);
} own_addrs SEC(".maps");

/* quic_servers: QUIC server id (l7/quiccid.go) of another node -> its MAC
 * on the shared segment. A short-header datagram to a SVC_QUIC port whose
 * connection ID names one is handed to that node (quic.h). This node's own
 * id, and ids two nodes claim, are not in it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PEERS);
	__type(key, __u32);
	__type(value, struct peer);
} quic_servers SEC(".maps");

/* quic_peer_macs: the MACs of quic_servers -> server id. A datagram from
 * one was handed over already and is never handed on, whatever this
 * node's view of the ids (no loops between nodes that disagree). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PEERS);
	__type(key, struct peer_mac);
	__type(value, __u32);
} quic_peer_macs SEC(".maps");

/* sync_event_type is never read: a ring buffer has no value type, so this
 * puts struct sync_event in BTF for bpf2go, as lb_drop_max does its enum. */
volatile const struct sync_event sync_event_type;

/* sync_ring: sync_event reports to Go. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SYNC_RING_BYTES);
} sync_ring SEC(".maps");

/* sample_every: one new flow in sample_every (on average) is sampled to
 * sample_ring; 0 samples none. Set at load. */
volatile const __u32 sample_every = 0;

/* flow_sample_type puts struct flow_sample in BTF, as sync_event_type. */
volatile const struct flow_sample flow_sample_type;

/* sample_ring: flow_sample records to Go. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SAMPLE_RING_BYTES);
} sample_ring SEC(".maps");

/* scratch: struct scratch of each CPU (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* flow_stats: counters of ownership, sync and sampling (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_counters);
} flow_stats SEC(".maps");

/* svc_stats: service id -> counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct lb_stats);
} svc_stats SEC(".maps");

/* backend_stats: backend id -> counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_stats);
} backend_stats SEC(".maps");

/* global_stats: drops that belong to no service (fragments, malformed). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_stats);
} global_stats SEC(".maps");

#endif /* WEFT_MAPS_H */
