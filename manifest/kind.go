package manifest

import (
	"fmt"
	"strings"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A document's kind is the name of the message in weftv1.Resource's "kind"
// oneof (LoadBalancer, Pool, Certificate, DNSRecord, AddressPool), so a kind added to the
// proto is read and written here without a change.
var kindOneof = (&weftv1.Resource{}).ProtoReflect().Descriptor().Oneofs().ByName("kind")

// kindField returns the oneof field of Resource that holds kind, or nil.
func kindField(kind string) protoreflect.FieldDescriptor {
	fields := kindOneof.Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); string(fd.Message().Name()) == kind {
			return fd
		}
	}
	return nil
}

// kindNames lists the kinds for error messages: "LoadBalancer, Pool, ... or DNSRecord".
func kindNames() string {
	fields := kindOneof.Fields()
	var names []string
	for i := range fields.Len() {
		names = append(names, string(fields.Get(i).Message().Name()))
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// set returns the message held by r and its kind field, or nil when r has
// no kind set.
func set(r *weftv1.Resource) (protoreflect.Message, protoreflect.FieldDescriptor) {
	m := r.ProtoReflect()
	fd := m.WhichOneof(kindOneof)
	if fd == nil {
		return nil, nil
	}
	return m.Get(fd).Message(), fd
}

// NameOf returns metadata.name of r, or "" when it has none.
func NameOf(r *weftv1.Resource) string {
	m, _ := set(r)
	if m == nil {
		return ""
	}
	if md, ok := m.Interface().(interface{ GetMetadata() *weftv1.Metadata }); ok {
		return md.GetMetadata().GetName()
	}
	return ""
}

// kindAliases maps what a user may type on the command line to a kind.
var kindAliases = map[string]string{
	"loadbalancer": "LoadBalancer", "loadbalancers": "LoadBalancer", "lb": "LoadBalancer", "lbs": "LoadBalancer",
	"pool": "Pool", "pools": "Pool",
	"certificate": "Certificate", "certificates": "Certificate", "cert": "Certificate", "certs": "Certificate",
	"dnsrecord": "DNSRecord", "dnsrecords": "DNSRecord", "dns": "DNSRecord",
	"addresspool": "AddressPool", "addresspools": "AddressPool", "ap": "AddressPool",
}

// ParseKind returns the kind named by s, which may be singular, plural or
// short ("lb", "cert", "dns", "ap"), in any case.
func ParseKind(s string) (string, error) {
	if k, ok := kindAliases[strings.ToLower(s)]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q (want loadbalancers, pools, certificates, dnsrecords or addresspools)", s)
}
