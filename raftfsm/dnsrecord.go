package raftfsm

import (
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

var dnsRecordKind = &resourceKind{
	name:  KindDNSRecord,
	noun:  "DNS record",
	table: tableDNSRecords,
	unwrap: func(r *weftv1.Resource) proto.Message {
		if m := r.GetDnsRecord(); m != nil {
			return m
		}
		return nil
	},
	wrap: func(m proto.Message) *weftv1.Resource {
		return &weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: m.(*weftv1.DNSRecord)}}
	},
	check: checkDNSRecord,
}

// dnsRecordLoadBalancers are the load balancers r targets.
func dnsRecordLoadBalancers(r *weftv1.DNSRecord) []string {
	var lbs []string
	for _, t := range r.GetSpec().GetTargets() {
		if lb := t.GetLoadBalancer(); lb != "" {
			lbs = append(lbs, lb)
		}
	}
	return lbs
}

// checkDNSRecord verifies that every load balancer the record targets exists.
func checkDNSRecord(tx *writeTxn, m proto.Message) error {
	r := m.(*weftv1.DNSRecord)
	for i, t := range r.GetSpec().GetTargets() {
		lb := t.GetLoadBalancer()
		if lb == "" {
			continue
		}
		if err := tx.mustExist(tableLoadBalancers, lb, "DNS record %q: target %d: load balancer %q does not exist", r.GetMetadata().GetName(), i+1, lb); err != nil {
			return err
		}
	}
	return nil
}

// DNSRecord returns the named DNS record, or nil.
func (s *State) DNSRecord(name string) *weftv1.DNSRecord {
	return getRow[*weftv1.DNSRecord](s, tableDNSRecords, name)
}

// DNSRecords returns every DNS record, sorted by name.
func (s *State) DNSRecords() []*weftv1.DNSRecord {
	return listRows[*weftv1.DNSRecord](s, tableDNSRecords)
}
