package api

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/tokens"
	"github.com/weftlb/weft/validate"
)

func dnsRecord(name string) *weftv1.DNSRecord {
	return &weftv1.DNSRecord{Metadata: &weftv1.Metadata{Name: name},
		Spec: &weftv1.DNSRecordSpec{Fqdn: name + ".example.com", Type: "A", Values: []string{"192.0.2.1"}}}
}

// TestDNS_Reads: DNS record reads carry the answering node's DNS status,
// or say that it runs no DNS server; a written status is dropped.
func TestDNS_Reads(t *testing.T) {
	served := &weftv1.DNSRecordStatus{Observer: "n1", Served: true, Zone: "example.com.",
		Answers: []*weftv1.DNSAnswer{{Addresses: []string{"192.0.2.1"}, Reason: "static A"}}}
	tests := []struct {
		name   string
		dns    map[string]*weftv1.DNSRecordStatus
		want   *weftv1.DNSRecordStatus
		reason string
	}{
		{"no DNS server", nil, nil, "node n1 runs no DNS server"},
		{"record not applied yet", map[string]*weftv1.DNSRecordStatus{}, nil, "has not applied this record yet"},
		{"served", map[string]*weftv1.DNSRecordStatus{"www": served}, served, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, func(c *Config) { c.Observed = func() Observed { return Observed{DNS: tc.dns} } })
			c := n.client(n.admin)
			ctx := context.Background()
			d := dnsRecord("www")
			d.Status = &weftv1.DNSRecordStatus{Reason: "written by the caller"}
			if _, err := c.LB.CreateDNSRecord(ctx, connect.NewRequest(&weftv1.CreateDNSRecordRequest{DnsRecord: d})); err != nil {
				t.Fatal(err)
			}
			if st := n.raft.FSM().State().DNSRecord("www").GetStatus(); st != nil {
				t.Errorf("stored record has status %v, want none", st)
			}
			got, err := c.LB.GetDNSRecord(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "www"}))
			if err != nil {
				t.Fatal(err)
			}
			list, err := c.LB.ListDNSRecords(ctx, connect.NewRequest(&weftv1.ListRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			for what, st := range map[string]*weftv1.DNSRecordStatus{"get": got.Msg.GetDnsRecord().GetStatus(),
				"list": list.Msg.GetDnsRecords()[0].GetStatus()} {
				switch {
				case tc.want != nil && !proto.Equal(st, tc.want):
					t.Errorf("%s: status %v, want %v", what, st, tc.want)
				case tc.want == nil && (st.GetServed() || !strings.Contains(st.GetReason(), tc.reason)):
					t.Errorf("%s: status %v, want not served because %q", what, st, tc.reason)
				}
			}
		})
	}
}

// TestDNS_Query: QueryDNS is answered by the node's own DNS server for
// any role that reads, its refusals keep their codes, and a node without
// a DNS server says so.
func TestDNS_Query(t *testing.T) {
	var asked *weftv1.QueryDNSRequest
	n := newTestNode(t, func(c *Config) {
		c.DNSQuery = func(req *weftv1.QueryDNSRequest) (*weftv1.QueryDNSResponse, error) {
			asked = req
			if req.GetType() == "BOGUS" {
				return nil, &validate.FieldError{Kind: "dns query", Field: "type", Problem: `"BOGUS" is not a DNS record type`}
			}
			return &weftv1.QueryDNSResponse{Rcode: "NOERROR", Answer: []string{req.GetName() + " 30 IN A 192.0.2.1"}}, nil
		}
	})
	_, viewer := n.token(tokens.RoleViewer, 0)
	c := n.client(viewer)
	ctx := context.Background()
	res, err := c.LB.QueryDNS(ctx, connect.NewRequest(&weftv1.QueryDNSRequest{Name: "www.example.com", Subnet: "192.0.2.0/24"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.GetNode() != "n1" || res.Msg.GetAnswer()[0] != "www.example.com 30 IN A 192.0.2.1" || asked.GetSubnet() != "192.0.2.0/24" {
		t.Errorf("QueryDNS = %v (asked %v), want n1's answer to the question as asked", res.Msg, asked)
	}
	_, err = c.LB.QueryDNS(ctx, connect.NewRequest(&weftv1.QueryDNSRequest{Name: "www.example.com", Type: "BOGUS"}))
	wantCode(t, err, connect.CodeInvalidArgument)

	none := newTestNode(t)
	_, err = none.client(none.admin).LB.QueryDNS(ctx, connect.NewRequest(&weftv1.QueryDNSRequest{Name: "www.example.com"}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if err == nil || !strings.Contains(err.Error(), "node n1 runs no DNS server") {
		t.Errorf("QueryDNS without a DNS server: %v", err)
	}
}
