/* consts.h: limits and constants of the XDP load balancer. Every limit can be
 * overridden at build time (-DNAME=value); the map sizes the Go loader may
 * change before load (conntrack size, Maglev ring size) are marked so. */
#ifndef WEFT_CONSTS_H
#define WEFT_CONSTS_H

/* Services (VIP, port, protocol) the program can hold. */
#ifndef MAX_SERVICES
#define MAX_SERVICES 1024
#endif

/* conntrack entries hold a service id in 16 bits. */
_Static_assert(MAX_SERVICES <= 65536, "ct_value.svc_id is 16 bits");

/* frag_replies: fragmented FullNAT replies in flight. An entry serves a
 * datagram's later fragments for FRAG_TIMEOUT seconds after its first,
 * Linux's reassembly timeout (net.ipv4.ipfrag_time). */
#define FRAG_TABLE_SIZE 16384
#define FRAG_TIMEOUT 30

/* vip_filter's size: 64 bits a word, VIP_FILTER_BITS bits. */
#define VIP_FILTER_BITS 65536
#define VIP_FILTER_WORDS (VIP_FILTER_BITS / 64)

/* Backends (address, port), shared by all services. */
#ifndef MAX_BACKENDS
#define MAX_BACKENDS 4096
#endif

/* Maglev table slots: one per service plus as many spares, so every
 * service can have a new table written beside its live one. */
#ifndef MAX_TABLES
#define MAX_TABLES (2 * MAX_SERVICES)
#endif

/* Default Maglev table size M (prime). The loader sets both the inner
 * table's max_entries and the ring_size constant from its option. */
#ifndef MAGLEV_RING_SIZE
#define MAGLEV_RING_SIZE 65537
#endif

/* Connection-table entries (forward and reverse maps each); the loader
 * sets max_entries from its ConnTrackSize option. */
#ifndef CONNTRACK_SIZE
#define CONNTRACK_SIZE 65536
#endif

/* Entries of the tables of new flows (ct_new and nat_new each); the
 * loader sets max_entries from its NewConnTrackSize option. */
#ifndef CT_NEW_SIZE
#define CT_NEW_SIZE 16384
#endif

/* Local (source) addresses for FullNAT, per address family. */
#ifndef MAX_LOCAL_ADDRS
#define MAX_LOCAL_ADDRS 16
#endif

/* FullNAT source ports are taken from [NAT_PORT_MIN, NAT_PORT_MAX]. The
 * default stays below Linux's ephemeral range (32768-60999), so that the
 * node's own connections from a local address (health checks to a
 * backend, say) never share a reply tuple with a FullNAT flow. */
#ifndef NAT_PORT_MIN
#define NAT_PORT_MIN 1024
#endif
#ifndef NAT_PORT_MAX
#define NAT_PORT_MAX 32767
#endif
#define NAT_PORT_RANGE (NAT_PORT_MAX - NAT_PORT_MIN + 1)

/* Ports tried, one after the other, when the port derived from the flow
 * hash is already taken towards the same backend. */
#ifndef NAT_PORT_PROBES
#define NAT_PORT_PROBES 32
#endif

/* Connection-table entry lifetimes in seconds since the flow's last
 * packet: a TCP flow that only sent its SYN, an established one, one that
 * sent a FIN or RST, and a UDP flow. An expired entry counts as absent:
 * a SYN or UDP packet opens a new flow (which may go elsewhere), other TCP
 * segments are dropped. */
#ifndef CT_TIMEOUT_SYN
#define CT_TIMEOUT_SYN 30
#endif
#ifndef CT_TIMEOUT_TCP
#define CT_TIMEOUT_TCP 900
#endif
#ifndef CT_TIMEOUT_CLOSING
#define CT_TIMEOUT_CLOSING 10
#endif
#ifndef CT_TIMEOUT_UDP
#define CT_TIMEOUT_UDP 300
#endif

/* Flow-ownership buckets: a flow's bucket is the top FLOW_BUCKET_BITS bits
 * of its flow hash. The Go side reads the count from the flow_owners map. */
#ifndef FLOW_BUCKET_BITS
#define FLOW_BUCKET_BITS 12
#endif
#define FLOW_BUCKETS (1 << FLOW_BUCKET_BITS)

/* Other nodes of the cluster a packet can be handed to (flow_owners and
 * snat_addrs name them by index). */
#ifndef MAX_PEERS
#define MAX_PEERS 256
#endif

/* Local (FullNAT source) addresses of the whole cluster, with where a
 * reply to each goes when it misses nat_reverse. */
#ifndef MAX_SNAT_ADDRS
#define MAX_SNAT_ADDRS 4096
#endif

/* Bytes of the ring buffer carrying sync reports to Go: a report takes 96
 * bytes with its header, so about 10900 fit between two reads. */
#ifndef SYNC_RING_BYTES
#define SYNC_RING_BYTES (1 << 20)
#endif

/* Bytes of the ring buffer carrying new-flow samples to Go: a sample
 * takes 48 bytes with its header, so about 5400 fit between two reads. */
#ifndef SAMPLE_RING_BYTES
#define SAMPLE_RING_BYTES (1 << 18)
#endif

/* An established flow is reported again after this many seconds of
 * traffic, so the copies on other nodes do not expire while it lives. */
#ifndef SYNC_REFRESH_SECS
#define SYNC_REFRESH_SECS 60
#endif

/* Target of a bucket or local address that this node handles itself. */
#define TARGET_SELF 0xffffffff

/* Seconds a closing entry serves the segments of its own connection's
 * end (last ACKs, retransmitted FINs) before a segment that hits it is
 * taken for a new connection on the same tuple and handed to the flow's
 * owner, if that is another node (xdp_lb.bpf.c). */
#ifndef CT_CLOSED_GRACE
#define CT_CLOSED_GRACE 2
#endif

/* VLAN tags (802.1Q / 802.1ad) skipped before the L3 header. */
#ifndef MAX_VLAN_TAGS
#define MAX_VLAN_TAGS 2
#endif

/* Addresses of this node's interface, whose use as a source marks a
 * packet as forged (own_addrs). */
#ifndef MAX_OWN_ADDRS
#define MAX_OWN_ADDRS 64
#endif

/* A TCP segment or UDP datagram whose checksum the program verifies
 * before it may change a flow (csum_segment, parse.h) is summed in
 * blocks, then 4-byte words. The blocks cover a page: an XDP frame without
 * multi-buffer fits in one. */
#define CSUM_BLOCKS 64
#define CSUM_BLOCK 64

/* Seeds of the flow hash and of the FullNAT port choice. Changing them
 * moves every new flow, and nodes running different values disagree. */
#define FLOW_HASH_SEED 0x77656674 /* "weft" */
#define NAT_HASH_SEED 0x6e617470  /* "natp" */

/* QUIC connection IDs the L7 proxy issues (l7/quiccid.go): QUIC_CID_LEN
 * bytes, the first's top two bits QUIC_CID_VERSION, then the issuing
 * node's server id in two bytes, big endian. */
#define QUIC_CID_LEN 8
#define QUIC_CID_VERSION 1

/* Table entry of a Maglev slot with no backend. */
#define NO_BACKEND 0xffffffff

/* Protocol numbers, EtherTypes (host order). */
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_ICMPV6_ 58
#define ETH_P_IP_ 0x0800
#define ETH_P_ARP_ 0x0806
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

#endif /* WEFT_CONSTS_H */
