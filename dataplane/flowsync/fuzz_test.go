package flowsync

import (
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/dataplane"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// FuzzSyncRequest feeds a peer's message to the decoding the server runs:
// no panic, and every flow it accepts is one a dataplane could hold, which
// encodes back to itself.
func FuzzSyncRequest(f *testing.F) {
	seed, _ := proto.Marshal(&weftv1.SyncRequest{Node: "n1", Flows: []*weftv1.SyncedFlow{toWire(dataplane.Flow{
		Client: netip.MustParseAddrPort("198.18.0.2:40000"), VIP: netip.MustParseAddrPort("198.51.100.10:80"), Proto: 6,
		Backend: netip.MustParseAddrPort("198.18.1.21:8080"), Local: netip.MustParseAddrPort("198.18.1.111:2000"), Established: true,
	}, dataplane.InstallForward|dataplane.InstallReply)}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req weftv1.SyncRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		for _, w := range req.GetFlows() {
			fl, into, err := fromWire(w)
			if err != nil {
				continue
			}
			if fl.Proto != 6 && fl.Proto != 17 || fl.VIP.Port() == 0 || fl.Backend.Port() == 0 || into == 0 ||
				fl.Client.Addr().Is4() != fl.VIP.Addr().Is4() || (into&dataplane.InstallReply != 0 && !fl.FullNAT()) {
				t.Fatalf("accepted %+v for %v", fl, into)
			}
			again, into2, err := fromWire(toWire(fl, into))
			if err != nil || again != fl || into2 != into {
				t.Fatalf("%+v (%v) encodes to %+v (%v, %v)", fl, into, again, into2, err)
			}
		}
	})
}
