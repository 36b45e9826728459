/* quic.h: migrated QUIC connections routed by the server id in their
 * connection IDs (Katran's idea). Every node's L7 proxy serves HTTP/3 on
 * the VIP's UDP port (SVC_QUIC) and issues connection IDs that name it
 * (l7/quiccid.go); ECMP sends a client to one node by its 4-tuple. When
 * the client's address or port changes (NAT rebinding, a new network),
 * ECMP may pick another node, which does not know the connection: this
 * node hands the datagram to the node its destination connection ID
 * names, as flow.h hands an unknown flow to its owner (MAC rewrite,
 * XDP_TX on the shared segment). Everything else (long headers, which
 * carry the handshake to the node ECMP chose, this node's own id, ids it
 * does not know) goes to the stack as before. */
#ifndef WEFT_QUIC_H
#define WEFT_QUIC_H

#include "flow.h"

/* quic_server_id reads the server id from the destination connection ID
 * of a short-header QUIC packet, the UDP payload at q (RFC 9000 17.3: the
 * first byte's top bit is 0, the DCID follows it, its length known only to
 * the server). Returns the id, or -1 for a long header, a connection ID
 * of another layout, or a datagram too short to hold one. */
static __always_inline int quic_server_id(const struct udphdr *uh, const __u8 *q, const void *data_end)
{
	if ((const void *)(q + 1 + QUIC_CID_LEN) > data_end ||
	    bpf_ntohs(uh->len) < sizeof(*uh) + 1 + QUIC_CID_LEN)
		return -1;
	if (q[0] & 0x80)
		return -1;
	if (q[1] >> 6 != QUIC_CID_VERSION)
		return -1;
	return (int)q[2] << 8 | q[3];
}

/* quic_route handles a UDP datagram to a SVC_QUIC port: handed to the
 * node its connection ID names if that is another node quic_servers
 * knows and the frame does not come from one (handed over already), else
 * passed to this node's stack. */
static __always_inline int quic_route(struct pkt *p)
{
	struct udphdr *uh = p->l4;
	if (!uh || (void *)(uh + 1) > p->data_end)
		return XDP_PASS;
	int sid = quic_server_id(uh, (const __u8 *)(uh + 1), p->data_end);
	if (sid < 0)
		return XDP_PASS;
	__u32 id = sid;
	struct peer *pe = bpf_map_lookup_elem(&quic_servers, &id);
	if (!pe || !pe->valid)
		return XDP_PASS;
	struct peer_mac k = {};
	__builtin_memcpy(k.mac, p->eth->h_source, ETH_ALEN);
	if (bpf_map_lookup_elem(&quic_peer_macs, &k))
		return XDP_PASS;
	set_macs(p, pe->mac);
	struct flow_counters *fc = flow_counters_get();
	if (fc)
		fc->redirect_quic++;
	return XDP_TX;
}

#endif /* WEFT_QUIC_H */
