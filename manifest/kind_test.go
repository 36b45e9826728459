package manifest

import (
	"testing"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestParseKind(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"loadbalancer", "LoadBalancer"}, {"LoadBalancers", "LoadBalancer"}, {"lb", "LoadBalancer"}, {"LBS", "LoadBalancer"},
		{"pool", "Pool"}, {"Pools", "Pool"},
		{"certificate", "Certificate"}, {"certificates", "Certificate"}, {"cert", "Certificate"}, {"Certs", "Certificate"},
		{"DNSRecord", "DNSRecord"}, {"dnsrecords", "DNSRecord"}, {"dns", "DNSRecord"},
	}
	for _, tc := range tests {
		got, err := ParseKind(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "node", "load-balancer", "poolz"} {
		if got, err := ParseKind(bad); err == nil {
			t.Errorf("ParseKind(%q) = %q, nil; want an error", bad, got)
		}
	}
	_, err := ParseKind("x")
	if want := `unknown kind "x" (want loadbalancers, pools, certificates, dnsrecords or addresspools)`; err == nil || err.Error() != want {
		t.Errorf("ParseKind(\"x\") error = %v, want %s", err, want)
	}
}

func TestNameOf(t *testing.T) {
	md := &weftv1.Metadata{Name: "a"}
	tests := []struct {
		in       *weftv1.Resource
		wantName string
	}{
		{&weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{Metadata: md}}}, "a"},
		{&weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{Metadata: md}}}, "a"},
		{&weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: &weftv1.Certificate{Metadata: md}}}, "a"},
		{&weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: &weftv1.DNSRecord{Metadata: md}}}, "a"},
		{&weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{}}}, ""},
		{&weftv1.Resource{Kind: &weftv1.Resource_Pool{}}, ""},
		{&weftv1.Resource{}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := NameOf(tc.in); got != tc.wantName {
			t.Errorf("NameOf(%v) = %q, want %q", tc.in, got, tc.wantName)
		}
	}
}
