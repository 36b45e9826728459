package validate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Pool defaults and limits.
const (
	maxMembers       = 1024
	defaultWeight    = 100
	defaultAlgorithm = "round-robin"
	// defaultUpstreamProtocol is how L7 listeners speak to members.
	defaultUpstreamProtocol = "http1"
	defaultCheckType        = "tcp"
	defaultInterval         = 5 * time.Second
	// defaultTimeout applies to intervals of 4s and more; shorter ones
	// default to half their interval.
	defaultTimeout       = 2 * time.Second
	defaultRise          = 2
	defaultFall          = 3
	defaultPath          = "/"
	defaultExpectedCodes = "200-399"
	minInterval          = time.Second
	maxInterval          = 5 * time.Minute
	maxThreshold         = 10
)

// Pool normalises and validates p in place; see Resource.
func Pool(p *weftv1.Pool) error {
	c, err := metadata(kindPool, p.GetMetadata())
	if err != nil {
		return err
	}
	if p.Spec == nil {
		p.Spec = &weftv1.PoolSpec{}
	}
	s := p.Spec
	if len(s.Members) > maxMembers {
		return c.fail("spec.members", "has %d members (at most %d)", len(s.Members), maxMembers)
	}
	seen := map[netip.AddrPort]int{}
	for i, m := range s.Members {
		if err := c.member(i, m); err != nil {
			return err
		}
		ap := netip.AddrPortFrom(netip.MustParseAddr(m.Address), uint16(m.Port))
		if j, dup := seen[ap]; dup {
			return c.fail(fmt.Sprintf("spec.members[%d]", i), "%s is already spec.members[%d]", ap, j)
		}
		seen[ap] = i
	}
	if s.HealthCheck == nil {
		s.HealthCheck = &weftv1.HealthCheck{}
	}
	if err := c.healthCheck(s.HealthCheck); err != nil {
		return err
	}
	return c.l7Pool(s)
}

// l7Pool checks the fields only L7 listeners use: how requests are spread
// and how members are spoken to.
func (c checker) l7Pool(s *weftv1.PoolSpec) error {
	if s.Algorithm == "" {
		s.Algorithm = defaultAlgorithm
	}
	if err := c.oneOf("spec.algorithm", s.Algorithm, "round-robin", "least-request", "hash-client-ip", "hash-header", "hash-cookie"); err != nil {
		return err
	}
	switch {
	case s.Algorithm == "hash-header" && !isToken(s.HashKey):
		return c.hashKeyProblem(s, "header")
	case s.Algorithm == "hash-cookie" && !isToken(s.HashKey):
		return c.hashKeyProblem(s, "cookie")
	case s.Algorithm != "hash-header" && s.Algorithm != "hash-cookie" && s.HashKey != "":
		// A key that nothing reads is a mistake the operator should see.
		return c.fail("spec.hashKey", "only hash-header and hash-cookie pools have a hash key (algorithm is %s)", s.Algorithm)
	}
	if s.UpstreamProtocol == "" {
		s.UpstreamProtocol = defaultUpstreamProtocol
	}
	if err := c.oneOf("spec.upstreamProtocol", s.UpstreamProtocol, "http1", "h2c", "h2"); err != nil {
		return err
	}
	if s.UpstreamTlsInsecure && s.UpstreamProtocol != "h2" {
		return c.fail("spec.upstreamTlsInsecure", "only h2 pools speak TLS to their members (upstreamProtocol is %s)", s.UpstreamProtocol)
	}
	return nil
}

func (c checker) hashKeyProblem(s *weftv1.PoolSpec, what string) error {
	if s.HashKey == "" {
		return c.fail("spec.hashKey", "must be set for %s pools (the %s name to hash)", s.Algorithm, what)
	}
	return c.fail("spec.hashKey", "%q is not a valid %s name", s.HashKey, what)
}

func (c checker) member(i int, m *weftv1.Member) error {
	field := fmt.Sprintf("spec.members[%d]", i)
	if m == nil {
		return c.fail(field, "must not be null")
	}
	var err error
	if m.Address, err = c.address(field+".address", m.Address); err != nil {
		return err
	}
	if err := c.port(field+".port", m.Port); err != nil {
		return err
	}
	if m.Weight == nil {
		m.Weight = proto.Int32(defaultWeight)
	}
	if w := *m.Weight; w < 0 || w > 100 {
		return c.fail(field+".weight", "must be 0..100, got %d", w)
	}
	return c.optionalLabel(field+".zone", m.Zone)
}

func (c checker) healthCheck(h *weftv1.HealthCheck) error {
	const field = "spec.healthCheck"
	if h.Type == "" {
		h.Type = defaultCheckType
	}
	if err := c.oneOf(field+".type", h.Type, "tcp", "http", "grpc"); err != nil {
		return err
	}
	if err := c.optionalPort(field+".port", h.Port); err != nil {
		return err
	}
	if h.Type == "http" {
		if h.Path == "" {
			h.Path = defaultPath
		}
		if h.ExpectedCodes == "" {
			h.ExpectedCodes = defaultExpectedCodes
		}
		if !strings.HasPrefix(h.Path, "/") {
			return c.fail(field+".path", "%q must start with \"/\"", h.Path)
		}
		codes, err := normaliseCodes(h.ExpectedCodes)
		if err != nil {
			return c.fail(field+".expectedCodes", "%q: %v", h.ExpectedCodes, err)
		}
		h.ExpectedCodes = codes
	} else {
		if h.Path != "" {
			return c.fail(field+".path", "only http checks have a path")
		}
		if h.ExpectedCodes != "" {
			return c.fail(field+".expectedCodes", "only http checks have expected codes")
		}
	}
	// The written values are checked before defaults fill the rest, so an
	// error never blames a value the user did not write.
	if err := c.duration(field+".interval", h.Interval, minInterval, maxInterval); err != nil {
		return err
	}
	if err := c.duration(field+".timeout", h.Timeout, 0, maxInterval); err != nil {
		return err
	}
	defaultedInterval := h.Interval == nil
	if defaultedInterval {
		h.Interval = durationpb.New(defaultInterval)
	}
	if h.Timeout == nil {
		// At most half the interval, so that a short interval gets a timeout
		// that fits it rather than an error about a value nobody wrote.
		h.Timeout = durationpb.New(min(defaultTimeout, h.Interval.AsDuration()/2))
	}
	// A check that may run longer than its interval would overlap the next.
	// Only a written timeout can get here: a default one is below the interval.
	if t, i := h.Timeout.AsDuration(), h.Interval.AsDuration(); t >= i {
		if defaultedInterval {
			return c.fail(field+".timeout", "%v must be shorter than the interval (%v by default; set interval too)", t, i)
		}
		return c.fail(field+".timeout", "%v must be shorter than the interval (%v)", t, i)
	}
	if h.Rise == 0 {
		h.Rise = defaultRise
	}
	if h.Fall == 0 {
		h.Fall = defaultFall
	}
	if h.Rise > maxThreshold {
		return c.fail(field+".rise", "%d is not valid (1..%d)", h.Rise, maxThreshold)
	}
	if h.Fall > maxThreshold {
		return c.fail(field+".fall", "%d is not valid (1..%d)", h.Fall, maxThreshold)
	}
	return nil
}

// normaliseCodes checks a list of status codes and ranges such as
// "200-399" or "200, 204" and returns it without spaces.
func normaliseCodes(s string) (string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return "", fmt.Errorf("empty item; want codes or ranges like \"200-399\" or \"200,204\"")
		}
		loS, hiS, isRange := strings.Cut(item, "-")
		lo, err := statusCode(loS)
		if err != nil {
			return "", err
		}
		if isRange {
			hi, err := statusCode(hiS)
			if err != nil {
				return "", err
			}
			if hi < lo {
				return "", fmt.Errorf("range %q ends before it starts", item)
			}
		}
		out = append(out, item)
	}
	return strings.Join(out, ","), nil
}

func statusCode(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 {
		return 0, fmt.Errorf("%q is not a status code; want codes or ranges like \"200-399\" or \"200,204\"", s)
	}
	if n < 100 || n > 599 {
		return 0, fmt.Errorf("%d is not a valid status code (100-599)", n)
	}
	return n, nil
}
