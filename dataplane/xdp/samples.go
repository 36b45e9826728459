package xdp

// New-flow samples (sample_ring): one new flow in Options.SampleEvery, with
// its client and VIP, for the top clients and source prefixes of each VIP.
// The ring reader is shared with the sync reports (flows.go).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// FlowSample is a sampled new flow: a TCP SYN or first UDP datagram of a
// service, opened or, Limited, dropped above the listener's new-flow rate.
type FlowSample struct {
	Client  netip.Addr
	VIP     netip.Addr
	Limited bool
}

// ReadSamples hands the program's new-flow samples to fn until ctx ends, in
// batches of what the ring holds. One reader at a time. Samples the ring
// had no room for are counted (FlowCounters.SamplesLost).
func (d *Dataplane) ReadSamples(ctx context.Context, fn func([]FlowSample)) error {
	return readRing(ctx, d.objs.SampleRing, "sample ring", samplePoll, decodeSample, fn)
}

// samplePoll is how often ReadSamples looks at the ring: the program wakes
// it up only when the ring is half full (sample_new_flow).
const samplePoll = 250 * time.Millisecond

func decodeSample(raw []byte) (FlowSample, bool) {
	if len(raw) < int(unsafe.Sizeof(lbFlowSample{})) {
		return FlowSample{}, false
	}
	e := *(*lbFlowSample)(unsafe.Pointer(unsafe.SliceData(raw)))
	return FlowSample{Client: addrOf(lbLbAddr(e.Src)), VIP: addrOf(lbLbAddr(e.Vip)), Limited: e.Limited != 0}, true
}

// readRing reads the ring buffer m until ctx ends, decoding each record and
// handing them to report in batches of at most reportBatch: a batch goes as
// soon as the ring is drained, never held back to fill. poll, if not 0, is
// the longest wait for a wakeup, for a ring whose writer does not always
// wake its reader (BPF_RB_NO_WAKEUP).
func readRing[T any](ctx context.Context, m *ebpf.Map, name string, poll time.Duration, decode func([]byte) (T, bool), report func([]T)) error {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	defer rd.Close()
	var (
		rec   ringbuf.Record
		batch []T
	)
	for {
		// With records in hand, a deadline already past: the read
		// returns the ring's next record, or ErrDeadlineExceeded once
		// it has none. (AvailableBytes would race with Close.)
		switch {
		case len(batch) > 0:
			rd.SetDeadline(time.Now())
		case poll > 0:
			rd.SetDeadline(time.Now().Add(poll))
		default:
			rd.SetDeadline(time.Time{})
		}
		err := rd.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if len(batch) > 0 {
				report(batch)
				batch = nil
			}
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return ctx.Err()
		case err != nil:
			return fmt.Errorf("read %s: %w", name, err)
		}
		if v, ok := decode(rec.RawSample); ok {
			batch = append(batch, v)
		}
		if len(batch) == reportBatch {
			report(batch)
			batch = nil
		}
	}
}
