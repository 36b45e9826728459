package health

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for a CheckSpec's zero fields.
const (
	DefaultInterval          = 5 * time.Second
	DefaultTimeout           = 2 * time.Second
	DefaultRise              = 2
	DefaultFall              = 3
	DefaultExpectedCodes     = "200-399"
	DefaultPath              = "/"
	DefaultCheckersPerMember = 2
)

// CheckType is how a member is probed.
type CheckType string

// Check types.
const (
	TCP   CheckType = "tcp"   // a TCP connect
	HTTP  CheckType = "http"  // a GET whose status is in ExpectedCodes
	HTTPS CheckType = "https" // the same over TLS; the certificate is not verified
	GRPC  CheckType = "grpc"  // grpc.health.v1 Check answering SERVING, plaintext
)

// Config is the whole health-check configuration of one node.
type Config struct {
	// Self is this node's name; it probes the members assigned to it.
	Self string
	// Nodes are the live nodes (from gossip), Self included: the candidates
	// for checking.
	Nodes []NodeInfo
	Pools []Pool
	// CheckersPerMember is how many nodes probe each member (default 2).
	CheckersPerMember int
}

// NodeInfo is a live node.
type NodeInfo struct {
	Name string
	Zone string
}

// Pool is a set of members sharing one health check.
type Pool struct {
	Name    string
	Check   CheckSpec
	Members []Member
}

// Member is a real server. The member's zone plays no part in health
// checking (checkers are spread over the nodes' zones), so it is not here.
type Member struct {
	Addr netip.AddrPort
}

// CheckSpec says how to probe a pool's members. Zero fields take the
// defaults above.
type CheckSpec struct {
	Type CheckType // default TCP
	// Port, when set, is probed instead of the member's port.
	Port uint16
	// Path, Host and ExpectedCodes are for HTTP(S): the request path, the Host
	// header (and TLS server name), and the accepted statuses, as ranges and
	// codes like "200-399" or "200,204".
	Path          string
	Host          string
	ExpectedCodes string
	// Service is the gRPC health service name; empty asks about the server.
	Service string
	// Interval between checks; Timeout of one check (shorter than Interval).
	Interval time.Duration
	Timeout  time.Duration
	// Rise consecutive successes mark a member up, Fall failures down.
	Rise int
	Fall int
}

// MemberKey names a member across the cluster.
type MemberKey struct {
	Pool string
	Addr netip.AddrPort
}

func (k MemberKey) String() string { return k.Pool + "/" + k.Addr.String() }

// withDefaults fills zero fields and checks the result; the returned spec is
// what decides whether a running probe is unchanged.
func (s CheckSpec) withDefaults() (CheckSpec, codeRanges, error) {
	if s.Type == "" {
		s.Type = TCP
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = min(DefaultTimeout, s.Interval/2)
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	switch {
	case s.Interval < 0 || s.Timeout < 0:
		return s, nil, errors.New("interval and timeout must be positive")
	case s.Timeout >= s.Interval:
		// A check running longer than its interval would overlap the next.
		return s, nil, fmt.Errorf("timeout %v must be shorter than the interval %v", s.Timeout, s.Interval)
	case s.Rise < 0 || s.Fall < 0:
		return s, nil, errors.New("rise and fall must be positive")
	}
	var codes codeRanges
	switch s.Type {
	case HTTP, HTTPS:
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if !strings.HasPrefix(s.Path, "/") {
			return s, nil, fmt.Errorf("path %q must start with \"/\"", s.Path)
		}
		if s.ExpectedCodes == "" {
			s.ExpectedCodes = DefaultExpectedCodes
		}
		var err error
		if codes, err = parseCodes(s.ExpectedCodes); err != nil {
			return s, nil, fmt.Errorf("expected codes %q: %w", s.ExpectedCodes, err)
		}
	case TCP, GRPC:
	default:
		return s, nil, fmt.Errorf("check type %q is not tcp, http, https or grpc", s.Type)
	}
	return s, codes, nil
}

// codeRanges are accepted HTTP statuses, inclusive ranges.
type codeRanges [][2]int

func parseCodes(s string) (codeRanges, error) {
	var out codeRanges
	for item := range strings.SplitSeq(s, ",") {
		loS, hiS, isRange := strings.Cut(strings.TrimSpace(item), "-")
		lo, err := statusCode(loS)
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = statusCode(hiS); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, fmt.Errorf("range %q ends before it starts", item)
			}
		}
		out = append(out, [2]int{lo, hi})
	}
	return out, nil
}

func statusCode(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not a status code (100-599)", s)
	}
	return n, nil
}

func (c codeRanges) contains(code int) bool {
	for _, r := range c {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}
