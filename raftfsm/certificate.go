package raftfsm

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

var certificateKind = &resourceKind{
	name:  KindCertificate,
	noun:  "certificate",
	table: tableCertificates,
	unwrap: func(r *weftv1.Resource) proto.Message {
		if m := r.GetCertificate(); m != nil {
			return m
		}
		return nil
	},
	wrap: func(m proto.Message) *weftv1.Resource {
		return &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: m.(*weftv1.Certificate)}}
	},
	users: certificateUsers,
}

// certificateUsers refuses to delete a certificate that a listener names.
func certificateUsers(tx *writeTxn, name string) error {
	raw, err := tx.txn.First(tableLoadBalancers, indexCertificate, name)
	if err != nil {
		return fmt.Errorf("look up users of certificate %q: %w", name, err)
	}
	if raw == nil {
		return nil
	}
	lb := raw.(*weftv1.LoadBalancer)
	for _, l := range lb.GetSpec().GetListeners() {
		if slices.Contains(l.GetCertificates(), name) {
			return stateErrorf(FailedPrecondition, "certificate %q is used by load balancer %q listener %q", name, lb.GetMetadata().GetName(), listenerName(l))
		}
	}
	return stateErrorf(FailedPrecondition, "certificate %q is used by load balancer %q", name, lb.GetMetadata().GetName())
}

// Certificate returns the named certificate (with its private key), or nil.
func (s *State) Certificate(name string) *weftv1.Certificate {
	return getRow[*weftv1.Certificate](s, tableCertificates, name)
}

// Certificates returns every certificate, sorted by name.
func (s *State) Certificates() []*weftv1.Certificate {
	return listRows[*weftv1.Certificate](s, tableCertificates)
}
