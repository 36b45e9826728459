/* structs.h: map keys and values shared with the Go loader (bpf2go -type
 * generates the Go side of each). Addresses are always 16 bytes: an IPv4
 * address is stored IPv4-mapped (::ffff:a.b.c.d), as Go's netip.Addr.As16
 * gives it, so one key type serves both families. */
#ifndef WEFT_STRUCTS_H
#define WEFT_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

/* lb_addr is an IPv6 or IPv4-mapped address. */
struct lb_addr {
	__be32 a[4]; /* network order */
};

/* svc_key identifies a service: (VIP, port, protocol). */
struct svc_key {
	struct lb_addr vip; /* network order */
	__be16 port;        /* network order */
	__u8 proto;         /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;           /* zero */
};

/* The enums below that are struct fields have a one-byte underlying type
 * (a clang extension) so that BTF, and so bpf2go, names them. */

/* lb_mode is how a service forwards. */
enum lb_mode : __u8 {
	LB_MODE_FULLNAT = 0, /* rewrite both addresses and ports */
	LB_MODE_DSR = 1,     /* rewrite the destination MAC only */
};

/* lb_sched is what a service hashes to pick a backend for a new flow. */
enum lb_sched : __u8 {
	LB_SCHED_MAGLEV = 0,      /* the 5-tuple */
	LB_SCHED_SOURCE_HASH = 1, /* the source address only */
};

/* svc_flags are the bits of svc_value.flags. */
enum svc_flags : __u16 {
	/* A UDP service that forwards fragments: its backend is picked by
	 * the addresses and protocol (addr_hash), not the ports, which only
	 * a datagram's first fragment carries; the loader also writes it
	 * under (VIP, port 0, UDP), where fragment() finds it. DSR only. */
	SVC_FRAGMENTS = 1,
	/* Not a service of this program: a VIP:port (UDP) where every node's
	 * L7 proxy serves HTTP/3. The entry has no id nor table; a datagram
	 * of it goes to the stack, or to the node its QUIC connection ID
	 * names (quic.h). */
	SVC_QUIC = 2,
};

/* svc_value is a service's configuration. */
struct svc_value {
	__u32 id;    /* host order; index into svc_stats */
	__u32 table; /* host order; slot of its Maglev table in maglev_tables */
	enum lb_mode mode;   /* one byte */
	enum lb_sched sched; /* one byte */
	enum svc_flags flags; /* two bytes, host order */
	__u32 new_flow_rate; /* host order; new flows a second on each CPU,
			      * above which they are dropped; 0: unlimited */
};

/* svc_entry is a service by id (map svc_by_id): its key, so that a
 * conntrack entry's svc_id can be checked against its packet, and its
 * configuration, as in services. */
struct svc_entry {
	struct svc_key key;
	struct svc_value value;
};

/* backend_flags are the bits of backend.flags. */
enum backend_flags : __u8 {
	BACKEND_VALID = 1,  /* the entry is in use */
	BACKEND_ACTIVE = 2, /* it takes new flows (weight > 0 in a service) */
};

/* backend is an entry of the backends array, indexed by backend id. */
struct backend {
	struct lb_addr addr; /* network order */
	__be16 port;         /* network order; ignored in DSR mode */
	enum backend_flags flags; /* one byte */
	__u8 pad;            /* zero */
};

/* flow_key is a 5-tuple as seen on the wire; conntrack, ct_new,
 * nat_reverse and nat_new are keyed by it. */
struct flow_key {
	struct lb_addr src; /* network order */
	struct lb_addr dst; /* network order */
	__be16 sport;       /* network order */
	__be16 dport;       /* network order */
	__u8 proto;         /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];        /* zero */
};

/* ct_flags are the bits of ct_value.flags. */
enum ct_flags : __u8 {
	CT_VALID = 1,       /* set on every entry: a zeroed value is no entry */
	CT_ESTABLISHED = 2, /* a TCP packet other than a SYN was seen */
	CT_CLOSING = 4,     /* a TCP FIN or RST was seen */
};

/* ct_value is a conntrack entry: where a client flow to a service goes. */
struct ct_value {
	struct lb_addr backend; /* network order */
	struct lb_addr local;   /* network order; FullNAT source address */
	__be16 bport;           /* network order; backend port */
	__be16 lport;           /* network order; FullNAT source port */
	__u32 backend_id;       /* host order; index into backend_stats */
	enum ct_flags flags;    /* one byte */
	__u8 pad;               /* zero */
	__u16 svc_id;           /* host order; its service's svc_value.id, the
				 * index into svc_by_id (a hint: checked there) */
	__u32 last_seen;        /* host order; seconds of CLOCK_MONOTONIC_COARSE */
	__u32 synced;           /* host order; second of the last sync report */
	__u8 mac[6];            /* next-hop MAC, valid while neigh_gen is the config's */
	__u8 pad2[2];           /* zero */
	__u32 neigh_gen;        /* host order; lb_config.neigh_gen mac was found at; 0: none */
};

/* nat_flags are the bits of nat_value.flags. */
enum nat_flags : __u8 {
	NAT_REPLIED = 1, /* the backend answered */
	NAT_CLOSING = 2, /* a TCP FIN or RST was seen, either way */
};

/* nat_value is a FullNAT reverse entry, keyed by the reply's 5-tuple
 * (backend -> local address): what to rewrite the reply to. Once expired
 * (the conntrack lifetimes, from last_seen) its port may be taken over. */
struct nat_value {
	struct lb_addr client; /* network order */
	struct lb_addr vip;    /* network order */
	__be16 cport;          /* network order */
	__be16 vport;          /* network order */
	__u32 svc_id;          /* host order; index into svc_stats */
	__u32 backend_id;      /* host order; index into backend_stats */
	__u32 last_seen;       /* host order; seconds of CLOCK_MONOTONIC_COARSE */
	enum nat_flags flags;  /* one byte */
	__u8 pad[3];           /* zero */
};

/* frag_key is a fragmented datagram: its addresses, protocol and
 * identification (map frag_replies). */
struct frag_key {
	struct lb_addr src; /* network order */
	struct lb_addr dst; /* network order */
	__u32 id;           /* network order; IPv4's 16 bits in the first two bytes */
	__u8 proto;
	__u8 pad[3];        /* zero */
};

/* flow_rate counts the new flows of a service opened on one CPU in one
 * second (map new_flow_rate). */
struct flow_rate {
	__u32 second; /* host order; seconds of CLOCK_MONOTONIC_COARSE */
	__u32 count;  /* host order; new flows opened in that second */
};

/* neigh is a next-hop MAC address. */
struct neigh {
	__u8 mac[6];
	__u16 pad; /* zero */
};

/* lb_config is the program's global configuration (one entry). */
struct lb_config {
	__u32 n_local4;   /* host order; IPv4 local addresses in use */
	__u32 n_local6;   /* host order; IPv6 local addresses in use */
	__u8 gw_mac[6];   /* MAC of the default gateway */
	__u8 has_gw;      /* gw_mac is set */
	__u8 sync;        /* report flows to Go (flow sync runs) */
	__u8 mac[6];      /* MAC of the interface: source of ARP replies */
	__u16 pad;        /* zero */
	__u32 neigh_gen;  /* host order; changes with every neighbor or gateway change; not 0 */
};

/* peer is another node a packet can be handed to, on the same segment. */
struct peer {
	__u8 mac[6];
	__u8 valid; /* the entry is in use */
	__u8 pad;   /* zero */
};

/* peer_mac keys peer_macs: a node's MAC, padded. */
struct peer_mac {
	__u8 mac[6];
	__u16 pad; /* zero */
};

/* snat_value is what the program does with a local address of the cluster
 * (a FullNAT source of some node's flows). */
struct snat_value {
	__u32 target; /* host order; peer index a reply that misses nat_reverse
		       * is handed to, or TARGET_SELF */
	__u8 held;    /* this node answers ARP for the address */
	__u8 pad[3];  /* zero */
};

/* scratch is per-CPU working memory of the new-flow path, which the
 * 512-byte BPF stack has no room for. */
struct scratch {
	struct ct_value ct;   /* the new flow's entry */
	struct nat_value nv;  /* its FullNAT reverse entry */
	struct flow_key rk;   /* the reverse entry's key */
	__u32 nh, now;        /* nat_alloc's port search: port hash, time */
	__u32 found;          /* and its result */
};

/* sync_reason says why a sync_event was sent. */
enum sync_reason : __u8 {
	SYNC_NEW = 0,     /* the flow is established (TCP) or new (UDP) */
	SYNC_CLOSING = 1, /* a FIN or RST was seen */
	SYNC_REFRESH = 2, /* still alive, SYNC_REFRESH_SECS seconds on */
};

/* sync_event reports a conntrack entry to Go, which sends it to the nodes
 * that keep copies of the flow (ring buffer sync_ring). */
struct sync_event {
	struct flow_key key;    /* the client flow; network order */
	struct lb_addr backend; /* network order */
	struct lb_addr local;   /* network order; FullNAT source address */
	__be16 bport;           /* network order */
	__be16 lport;           /* network order */
	__u32 hash;             /* host order; flow_hash of key */
	enum ct_flags flags;    /* one byte */
	enum lb_mode mode;      /* one byte */
	enum sync_reason reason; /* one byte */
	__u8 pad;               /* zero */
};

/* flow_counters are per-CPU counters of flow ownership and sync. */
struct flow_counters {
	__u64 sync_events;      /* reports put in sync_ring */
	__u64 sync_lost;        /* reports lost: the ring was full */
	__u64 redirect_forward; /* client packets handed to a flow's owner */
	__u64 redirect_reply;   /* replies handed to a local address's holder */
	__u64 arp_replies;      /* ARP requests answered for held addresses */
	__u64 samples_lost;     /* new-flow samples lost: sample_ring was full */
	__u64 redirect_quic;    /* QUIC datagrams handed to the node their connection ID names */
};

/* flow_sample is one sampled new flow of a service, for the top clients of
 * its VIP (ring buffer sample_ring). */
struct flow_sample {
	struct lb_addr src; /* network order; the client */
	struct lb_addr vip; /* network order */
	__u8 limited;       /* dropped: above the service's new-flow rate */
	__u8 pad[3];        /* zero */
};

/* lb_drop is why a packet was dropped; indexes lb_stats.drops. */
enum lb_drop {
	LB_DROP_TTL = 0,         /* TTL or hop limit <= 1 */
	LB_DROP_NO_CONN = 1,     /* TCP non-SYN with no conntrack entry */
	LB_DROP_NO_BACKEND = 2,  /* the service's table has no backend */
	LB_DROP_NO_NEIGH = 3,    /* no next-hop MAC for the destination */
	LB_DROP_NAT_PORTS = 4,   /* no FullNAT local address or free port */
	LB_DROP_FRAGMENT = 5,    /* IP fragment to an L4 VIP */
	LB_DROP_MALFORMED = 6,   /* truncated or inconsistent header to an L4 VIP */
	LB_DROP_NEW_FLOW_RATE = 7, /* above the service's new-flow rate */
	LB_DROP_ETH_DST = 8,     /* frame to a VIP not addressed to this host's MAC */
	LB_DROP_IP_CSUM = 9,     /* bad IPv4 header checksum */
	LB_DROP_IP_OPTIONS = 10, /* IPv4 source route or malformed option */
	LB_DROP_MARTIAN = 11,    /* source no host may send from, or this node's */
	LB_DROP_L4_CSUM = 12,    /* bad TCP/UDP checksum on a segment that would change a flow */
	LB_DROP_TCP_FLAGS = 13,  /* TCP flags an endpoint discards (SYN+FIN, no ACK, ...) */
	LB_DROP_MAX = 16,
};

/* lb_stats are per-CPU counters of a service, a backend or the whole
 * program (drops that belong to no service). */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 drops[LB_DROP_MAX];
};

#endif /* WEFT_STRUCTS_H */
