package flowsync

import (
	"errors"
	"net/netip"
	"time"

	"github.com/weftlb/weft/dataplane"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// toWire encodes a flow and the tables it is for.
func toWire(f dataplane.Flow, into dataplane.Install) *weftv1.SyncedFlow {
	w := &weftv1.SyncedFlow{
		Client: f.Client.Addr().AsSlice(), ClientPort: uint32(f.Client.Port()),
		Vip: f.VIP.Addr().AsSlice(), VipPort: uint32(f.VIP.Port()), Proto: uint32(f.Proto),
		Backend: f.Backend.Addr().AsSlice(), BackendPort: uint32(f.Backend.Port()),
		Established: f.Established, Closing: f.Closing, IdleSeconds: uint32(f.Idle / time.Second),
		Forward: into&dataplane.InstallForward != 0, Reply: into&dataplane.InstallReply != 0,
	}
	if f.FullNAT() {
		w.Local, w.LocalPort = f.Local.Addr().AsSlice(), uint32(f.Local.Port())
	}
	return w
}

var errBadFlow = errors.New("invalid synced flow")

// fromWire decodes a synced flow, refusing one that could not have come
// from a dataplane: it would be written into the tables as it is.
func fromWire(w *weftv1.SyncedFlow) (dataplane.Flow, dataplane.Install, error) {
	addrPort := func(b []byte, port uint32, zeroOK bool) (netip.AddrPort, bool) {
		a, ok := netip.AddrFromSlice(b)
		if !ok || port > 65535 || (port == 0 && !zeroOK) {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
	}
	var f dataplane.Flow
	var ok [3]bool
	f.Client, ok[0] = addrPort(w.GetClient(), w.GetClientPort(), true)
	f.VIP, ok[1] = addrPort(w.GetVip(), w.GetVipPort(), false)
	f.Backend, ok[2] = addrPort(w.GetBackend(), w.GetBackendPort(), false)
	if ok != [3]bool{true, true, true} || (w.GetProto() != 6 && w.GetProto() != 17) ||
		f.Client.Addr().Is4() != f.VIP.Addr().Is4() || f.VIP.Addr().Is4() != f.Backend.Addr().Is4() {
		return dataplane.Flow{}, 0, errBadFlow
	}
	f.Proto = uint8(w.GetProto())
	if len(w.GetLocal()) > 0 {
		var good bool
		if f.Local, good = addrPort(w.GetLocal(), w.GetLocalPort(), false); !good || f.Local.Addr().Is4() != f.VIP.Addr().Is4() {
			return dataplane.Flow{}, 0, errBadFlow
		}
	}
	f.Established, f.Closing = w.GetEstablished(), w.GetClosing()
	f.Idle = time.Duration(w.GetIdleSeconds()) * time.Second
	var into dataplane.Install
	if w.GetForward() {
		into |= dataplane.InstallForward
	}
	if w.GetReply() && f.FullNAT() {
		into |= dataplane.InstallReply
	}
	if into == 0 {
		return dataplane.Flow{}, 0, errBadFlow
	}
	return f, into, nil
}
