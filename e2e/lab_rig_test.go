package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/weftlb/weft/deploy/lab"
)

var labVIP = netip.MustParseAddr("198.51.100.10")

// labRig is a lab with the client-side checks every lab test uses.
type labRig struct {
	t testing.TB
	l *lab.Lab
}

func (r *labRig) curl(port string) (string, error) {
	out, err := r.l.Command(context.Background(), r.l.Client, "curl", "-sS", "-m", "3", "http://"+labVIP.String()+":"+port+"/").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("curl :%s: %w: %s", port, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

var wrkReqs = regexp.MustCompile(`(\d+) requests in`)

// wrk runs a bounded wrk from the client and returns requests and errors
// (socket errors and non-2xx answers).
func (r *labRig) wrk(port string, seconds int, extra ...string) (requests, errors int) {
	r.t.Helper()
	args := append([]string{"-t1", "-c16", "-d" + strconv.Itoa(seconds) + "s", "--timeout", "2s"}, extra...)
	args = append(args, "http://"+labVIP.String()+":"+port+"/")
	out, err := r.l.Command(context.Background(), r.l.Client, "wrk", args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("wrk: %v %s", err, out)
	}
	m := wrkReqs.FindStringSubmatch(string(out))
	if m == nil {
		r.t.Fatalf("wrk output has no request count:\n%s", out)
	}
	requests, _ = strconv.Atoi(m[1])
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`),
		regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`),
	} {
		if m := re.FindStringSubmatch(string(out)); m != nil {
			for _, v := range m[1:] {
				n, _ := strconv.Atoi(v)
				errors += n
			}
		}
	}
	r.t.Logf("wrk %v: %d requests, %d errors", args, requests, errors)
	return requests, errors
}
