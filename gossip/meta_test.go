package gossip

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestNodeMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		meta NodeMeta
	}{
		{"empty", NodeMeta{}},
		{"zone only", NodeMeta{Zone: "a"}},
		{"checker", NodeMeta{Zone: "b", Checker: true}},
		{"full", NodeMeta{Region: "eu-west", Zone: "eu-west-1a", Draining: true, Checker: true, AppliedIndex: 1 << 40,
			Version: "v1.2.3-4-g0123456789ab-dirty", Addrs: map[string]string{"api": "[2001:db8::1]:8443", "raft": "10.0.0.1:7000", "flow": "10.0.0.1:7001"}}},
		{"flows", NodeMeta{Zone: "a", Flows: &FlowMeta{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
			Local: []netip.Addr{netip.MustParseAddr("198.18.1.111"), netip.MustParseAddr("2001:db8::111")}}}},
		{"flows without local addresses", NodeMeta{Zone: "a", Flows: &FlowMeta{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}},
		{"quic", NodeMeta{Zone: "a", QUIC: &QUICMeta{ServerID: 0xfe01, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}},
		{"quic without MAC", NodeMeta{Zone: "a", QUIC: &QUICMeta{ServerID: 7}}},
		{"quic id 0", NodeMeta{QUIC: &QUICMeta{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.meta.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			var got NodeMeta
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !reflect.DeepEqual(got, tc.meta) {
				t.Errorf("round trip: got %+v, want %+v", got, tc.meta)
			}
		})
	}
}

func TestNodeMetaTypicalSize(t *testing.T) {
	m := NodeMeta{Region: "eu-west", Zone: "eu-west-1a", Draining: true, AppliedIndex: 1 << 40, Version: "v1.2.3-4-g0123456789ab",
		Addrs: map[string]string{"api": "[2001:db8::1]:8443", "raft": "[2001:db8::1]:7000", "flow": "[2001:db8::1]:7001"}}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 160 {
		t.Errorf("typical meta: got %d bytes, want at most 160", len(b))
	}
	m.Addrs["big"] = strings.Repeat("x", MetaMaxSize)
	if _, err := m.MarshalBinary(); err == nil {
		t.Error("oversized meta: got no error")
	}
}

func TestNodeMetaSkipsUnknownFields(t *testing.T) {
	b, _ := NodeMeta{Zone: "z"}.MarshalBinary()
	b = append(b, 99, 3, 'a', 'b', 'c') // a field from a newer version
	var got NodeMeta
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if got.Zone != "z" {
		t.Errorf("zone: got %q, want %q", got.Zone, "z")
	}
}

func FuzzNodeMeta(f *testing.F) {
	b, _ := NodeMeta{Region: "r", Zone: "z", Draining: true, AppliedIndex: 7, Version: "v1", Addrs: map[string]string{"a": "b"}}.MarshalBinary()
	f.Add(b)
	f.Add([]byte{1, 3, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m NodeMeta
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same value.
		b2, err := m.MarshalBinary()
		if err != nil {
			return // decoded fields may exceed the limit when re-encoded
		}
		var m2 NodeMeta
		if err := m2.UnmarshalBinary(b2); err != nil || !reflect.DeepEqual(m, m2) {
			t.Errorf("re-decode: got %+v (%v), want %+v", m2, err, m)
		}
	})
}

func FuzzWire(f *testing.F) {
	f.Add(message{origin: "n1", id: 9, topic: "health", payload: []byte("x")}.encode())
	f.Add(encodeState("n1", []string{"a", "b"}, [][]byte{[]byte("1"), nil}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMessage(b); err == nil {
			if got := m.encode(); len(got) > len(b) {
				t.Errorf("re-encoded message is longer than its input: %d > %d", len(got), len(b))
			}
		}
		_ = decodeState(b, func(string, string, []byte) {})
	})
}
