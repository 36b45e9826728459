// Package validate normalises and checks API resources before they are
// proposed to Raft. Every check here is stateless: references between
// resources, in-use checks, duplicates across load balancers and
// compare-and-set belong to the state store, which sees the whole state, and
// a check that needs facts from outside the resource takes them as arguments
// (ListenerPorts, the ports the nodes listen on).
package validate

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Kind display names, as they appear in error messages.
const (
	kindLoadBalancer = "load balancer"
	kindPool         = "pool"
	kindCertificate  = "certificate"
	kindDNSRecord    = "dns record"
	kindAddressPool  = "address pool"
)

// FieldError is one problem with one field.
type FieldError struct {
	// Kind is the display name of the resource kind, e.g. "pool".
	Kind string
	// Name is the resource's name; empty when the name itself is the problem.
	Name string
	// Field is the path of the field as the JSON (and YAML) of the
	// resource spells it, e.g. "spec.members[1].port" or
	// "spec.listeners[0].stickySession.ttl".
	Field   string
	Problem string
}

// Error formats e as `pool "web": spec.members[1].port: 0 is not valid (1-65535)`.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind)
	if e.Name != "" {
		fmt.Fprintf(&b, " %q", e.Name)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

// Resource normalises (fills defaults) and validates r in place. It returns
// the first problem found as a *FieldError, or nil.
func Resource(r *weftv1.Resource) error {
	switch k := r.GetKind().(type) {
	case *weftv1.Resource_LoadBalancer:
		return LoadBalancer(k.LoadBalancer)
	case *weftv1.Resource_Pool:
		return Pool(k.Pool)
	case *weftv1.Resource_Certificate:
		return Certificate(k.Certificate)
	case *weftv1.Resource_DnsRecord:
		return DNSRecord(k.DnsRecord)
	case *weftv1.Resource_AddressPool:
		return AddressPool(k.AddressPool)
	default:
		return &FieldError{Kind: "resource", Field: "kind", Problem: "must be set (loadBalancer, pool, certificate, dnsRecord or addressPool)"}
	}
}

// Name checks that name is a DNS label: 1-63 characters of a-z, 0-9 and '-',
// not starting or ending with '-'. kind is the display name used in the
// error ("pool", "load balancer", ...).
func Name(kind, name string) error {
	if p := labelProblem(name); p != "" {
		return &FieldError{Kind: kind, Field: "metadata.name", Problem: p}
	}
	return nil
}

// checker collects the identity of the resource being checked so each check
// states only its field and problem.
type checker struct {
	kind, name string
}

func (c checker) fail(field, format string, args ...any) *FieldError {
	return &FieldError{Kind: c.kind, Name: c.name, Field: field, Problem: fmt.Sprintf(format, args...)}
}

// metadata checks the name and returns a checker for the rest of the resource.
func metadata(kind string, md *weftv1.Metadata) (checker, error) {
	if err := Name(kind, md.GetName()); err != nil {
		return checker{}, err
	}
	return checker{kind: kind, name: md.GetName()}, nil
}

// label checks that s is a DNS label, the form of every name and reference.
func (c checker) label(field, s string) error {
	if p := labelProblem(s); p != "" {
		return c.fail(field, "%s", p)
	}
	return nil
}

// optionalLabel is label for fields that may be empty.
func (c checker) optionalLabel(field, s string) error {
	if s == "" {
		return nil
	}
	return c.label(field, s)
}

func labelProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 63:
		return fmt.Sprintf("%q is %d characters long (at most 63)", s, len(s))
	case s[0] == '-' || s[len(s)-1] == '-':
		return fmt.Sprintf("%q must not start or end with '-'", s)
	}
	for _, r := range s {
		if !isLDH(r) {
			return fmt.Sprintf("%q has character %q; use a-z, 0-9 and '-'", s, r)
		}
	}
	return ""
}

func isLDH(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-'
}

// hostProblem checks a DNS host name such as "www.example.com" (lower case,
// no trailing dot), the form of HTTP hosts and, with a dot added, of FQDNs.
func hostProblem(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > 253 {
		return fmt.Sprintf("%q is %d characters long (at most 253)", s, len(s))
	}
	for l := range strings.SplitSeq(s, ".") {
		if p := labelProblem(l); p != "" {
			return fmt.Sprintf("%q is not a valid host name: label %s", s, p)
		}
	}
	return ""
}

// address checks that s is a unicast IP address and returns its canonical
// form, so equal addresses compare equal as strings in the state store.
// Loopback is allowed: the dev node serves VIPs on 127.0.0.x.
func (c checker) address(field, s string) (string, error) {
	if s == "" {
		return "", c.fail(field, "must be set")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", c.fail(field, "%q is not an IP address", s)
	}
	a = a.Unmap()
	switch {
	case a.Zone() != "":
		return "", c.fail(field, "%q has a zone; use an address without %%zone", s)
	case a.IsUnspecified():
		return "", c.fail(field, "%s is the unspecified address", s)
	case a.IsMulticast():
		return "", c.fail(field, "%s is a multicast address", s)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "", c.fail(field, "%s is the broadcast address", s)
	}
	return a.String(), nil
}

// port checks a port that must be set.
func (c checker) port(field string, p uint32) error {
	if p < 1 || p > 65535 {
		return c.fail(field, "%d is not valid (1-65535)", p)
	}
	return nil
}

// optionalPort checks a port where 0 means "not set".
func (c checker) optionalPort(field string, p uint32) error {
	if p > 65535 {
		return c.fail(field, "%d is not valid (0-65535)", p)
	}
	return nil
}

// oneOf checks that s is one of allowed; empty is reported as unset.
func (c checker) oneOf(field, s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	list := orList(allowed)
	if s == "" {
		return c.fail(field, "must be set (%s)", list)
	}
	return c.fail(field, "%q is not valid (%s)", s, list)
}

// orList formats "a, b or c".
func orList(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// duration checks an optional duration: when set it must be a valid
// protobuf duration in [lo, hi] (lo is exclusive when it is 0, since a zero
// duration set explicitly is never meant).
func (c checker) duration(field string, d *durationpb.Duration, lo, hi time.Duration) error {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return c.fail(field, "is not a valid duration: %v", err)
	}
	v := d.AsDuration()
	if lo == 0 {
		if v <= 0 {
			return c.fail(field, "%v must be positive (at most %v)", v, hi)
		}
	} else if v < lo {
		return c.fail(field, "%v is not valid (%v..%v)", v, lo, hi)
	}
	if v > hi {
		if lo == 0 {
			return c.fail(field, "%v is too long (at most %v)", v, hi)
		}
		return c.fail(field, "%v is not valid (%v..%v)", v, lo, hi)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token, the form of header and
// cookie names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(b)) {
			return false
		}
	}
	return true
}
