package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Tools the lab uses, by the Debian packages that provide each (space
// separated: pdns_server needs its bind backend too).
var toolPackages = map[string]string{
	"ping":    "iputils-ping",
	"ethtool": "ethtool",
	"bird":    "bird2",
	"curl":    "curl",
	"wrk":     "wrk",
	"nft":     "nftables",
	"nstat":   "iproute2",
	"hping3":  "hping3", // the SYN flood of TestLab_XDPFlood
	// Metrics: the server scraping the nodes and its checker.
	"prometheus": "prometheus",
	"promtool":   "prometheus",
	// DNS: clients, a resolver, and the benchmark's tool and peer.
	"dig":         "dnsutils",
	"kdig":        "knot-dnsutils",
	"unbound":     "unbound",
	"dnsperf":     "dnsperf",
	"pdns_server": "pdns-server pdns-backend-bind",
	"gdnsd":       "gdnsd",
}

var aptUpdate sync.Once

// EnsureTools installs, as root with apt-get, the Debian packages of the
// named tools that are missing, so a fresh machine needs no set-up by hand.
func EnsureTools(ctx context.Context, tools ...string) error {
	var missing []string
	for _, t := range tools {
		pkg, ok := toolPackages[t]
		if !ok {
			return fmt.Errorf("lab: no package known for tool %q", t)
		}
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, strings.Fields(pkg)...)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("lab: missing %v and not root to install them", missing)
	}
	var updateErr error
	aptUpdate.Do(func() { updateErr = apt(ctx, "update", "-qq") })
	if updateErr != nil {
		return updateErr
	}
	return apt(ctx, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
}

func apt(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get %v: %w: %s", args, err, out)
	}
	return nil
}
