package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/console"
	"github.com/weftlb/weft/dataplane/maglev"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/node"
)

func newAgentCmd() *cobra.Command {
	var (
		cfg                 node.Config
		dev                 bool
		logLevel, logFormat string
		accessLog           string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Weft node",
		Long: `Run a Weft node.

  weft agent --init ...                 create a cluster (prints the admin and join tokens once)
  weft agent --join HOST:PORT --token T join a cluster through any member
  weft agent --data-dir DIR             restart a node from its data directory
  weft agent --dev                      a single node on loopback with a temporary data dir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.AccessLog = cmd.OutOrStdout()
			if accessLog != "-" {
				f, err := openLogFile(accessLog)
				if err != nil {
					return fmt.Errorf("--access-log: %w", err)
				}
				defer f.Close()
				cfg.AccessLog = f
				// logrotate renames the file, then sends SIGHUP.
				hup := make(chan os.Signal, 1)
				signal.Notify(hup, syscall.SIGHUP)
				defer signal.Stop(hup)
				go func() {
					for range hup {
						if err := f.Reopen(); err != nil {
							logger.Error("access log not reopened", "err", err)
						} else {
							logger.Info("access log reopened", "path", accessLog)
						}
					}
				}()
			}
			if dev {
				dir, err := os.MkdirTemp("", "weft-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				cfg.DataDir, cfg.Init = dir, true
				if cfg.Name == "" {
					cfg.Name = "dev"
				}
				if !cmd.Flags().Changed("dataplane") {
					cfg.Dataplane = node.DataplaneUserspace
				}
			}
			if cfg.Name == "" {
				if cfg.Name, err = os.Hostname(); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			a, err := node.Start(cmd.Context(), cfg, out)
			if err != nil {
				return err
			}
			if dev {
				fmt.Fprintf(out, "dev node %s serving the API on %s\n", cfg.Name, cfg.APIAddr)
				fmt.Fprintf(out, "  export WEFT_ADDR=%s WEFT_CA_FILE=%s WEFT_TOKEN=$(cat %s/%s)\n",
					cfg.APIAddr, node.CAFile(cfg.DataDir), cfg.DataDir, node.AdminTokenFile)
				if cfg.Console {
					fmt.Fprintf(out, "  console: https://%s%s (trust %s in the browser; log in with the token)\n",
						cfg.APIAddr, console.Path, node.CAFile(cfg.DataDir))
				}
			}
			select {
			case <-cmd.Context().Done():
				logger.Info("shutting down")
			case err := <-a.Done():
				if err != nil {
					a.Close()
					return fmt.Errorf("api server: %w", err)
				}
			}
			return a.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/weft", "node state: identity, certificates, Raft log and snapshots")
	f.StringVar(&cfg.Name, "name", "", "node name, a DNS label (default: host name)")
	f.StringVar(&cfg.Region, "region", "default", "region of the node")
	f.StringVar(&cfg.Zone, "zone", "default", "zone of the node")
	f.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:7400", "API listen address")
	f.StringVar(&cfg.APIAdvertise, "advertise-api", "", "API address others dial (default: --api-addr)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7401", "Raft listen address")
	f.StringVar(&cfg.RaftAdvertise, "advertise-raft", "", "Raft address others dial (default: --raft-addr)")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", "", "gossip listen address, UDP and TCP (default: the --raft-addr host, port "+node.DefaultGossipPort+")")
	f.StringVar(&cfg.GossipAdvertise, "advertise-gossip", "", "gossip address others dial (default: the --advertise-raft host, the --gossip-addr port)")
	f.IntVar(&cfg.APIMaxRequestBytes, "api-max-request-bytes", api.DefaultMaxRequestBytes, "largest API request message accepted, in bytes")
	f.BoolVar(&cfg.Console, "console", true, "serve the web console on the API port at "+console.Path)
	f.BoolVar(&cfg.Init, "init", false, "create a new cluster with this node as its first member")
	f.StringVar(&cfg.Join, "join", "", "join the cluster of the member at HOST:PORT (its API address)")
	cfg.Token = os.Getenv("WEFT_JOIN_TOKEN")
	f.Var(secretFlag{&cfg.Token}, "token", "join token (default: WEFT_JOIN_TOKEN)")
	f.Uint32Var(&cfg.JoinTokenUses, "join-token-uses", 2, "uses of the join token printed by --init")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 0, "Raft log entries between snapshots (0: default)")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", 0, "how often Raft checks whether to snapshot (0: default)")
	f.Uint64Var(&cfg.TrailingLogs, "trailing-logs", 0, "Raft log entries kept after a snapshot (0: default)")
	f.DurationVar(&cfg.DeadServerTimeout, "dead-server-timeout", 0, "how long a voter may be unreachable before it is replaced (0: default)")
	f.StringVar(&cfg.Dataplane, "dataplane", node.DataplaneNone, "L4 dataplane: none, userspace or xdp (--dev: userspace)")
	f.StringVar(&cfg.Interface, "interface", "", "interface the XDP program runs on (--dataplane xdp)")
	f.Var(addrListFlag{&cfg.LocalAddrs}, "local-addr", "FullNAT source address of this node only, on the servers' segment; another node takes it over if this one is lost (repeatable; default: the node's own address, which none can take over)")
	f.BoolVar(&cfg.FlowSync, "flow-sync", true, "keep copies of this node's flows on their owners, so they survive its loss (--dataplane xdp)")
	f.Uint32Var(&cfg.SampleNewFlows, "sample-new-flows", node.DefaultSampleNewFlows, "sample one new flow in this many for the top clients of each VIP, shown by weft top --lb (--dataplane xdp; 0: none)")
	f.Uint32Var(&cfg.ConntrackEntries, "conntrack-entries", xdp.DefaultConnTrackSize, "connection-table entries, of the forward and the FullNAT reverse table each, a quarter of that for new flows: 410 bytes of kernel memory per entry in all (--dataplane xdp)")
	f.Uint32Var(&cfg.MaglevTableSize, "maglev-table-size", maglev.DefaultSize, "Maglev table size M, a prime, the same on every node; each service takes two tables of 8 x M bytes (XDP)")
	f.Uint32Var(&cfg.MaxServices, "max-services", xdp.DefaultMaxServices, "services (VIP, port, protocol) the XDP maps hold (--dataplane xdp)")
	f.Uint32Var(&cfg.MaxBackends, "max-backends", xdp.DefaultMaxBackends, "distinct backends (address, port) the XDP maps hold (--dataplane xdp)")
	f.Uint32Var(&cfg.BGP.ASN, "bgp-asn", 0, "announce served VIPs over BGP from this AS (0: BGP off)")
	f.StringSliceVar(&cfg.BGP.Peers, "bgp-peer", nil, "BGP router to peer with, ADDRESS:ASN (repeatable)")
	f.Var(addrFlag{&cfg.BGP.RouterID}, "bgp-router-id", "BGP router id (default: the Raft address)")
	f.IntVar(&cfg.BGP.PrependPerZone, "bgp-prepend", 2, "AS-path prepends per backup-zone rank")
	f.DurationVar(&cfg.DrainDelay, "drain-delay", 2*time.Second, "on stop, forward this long after withdrawing routes")
	f.StringVar(&cfg.DNSAddr, "dns-addr", "", "answer DNS for the committed zones on this host:port, UDP and TCP (e.g. :53; default: no DNS server)")
	f.BoolVar(&cfg.DNSAnycast, "dns-anycast", false, "announce the --dns-addr address over BGP like a VIP and make it local (anycast DNS; needs --bgp-asn)")
	f.IntVar(&cfg.DNSRateLimit, "dns-rate-limit", 0, "UDP DNS responses per second per client /24 (/56) before rate limiting (0: 200; negative: off)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", node.DefaultMetricsAddr, "serve Prometheus metrics on http://HOST:PORT/metrics, no token asked (\"\": off)")
	f.Uint16Var(&cfg.QUICServerID, "quic-server-id", 0, "this node's id in the connection IDs of its HTTP/3 connections, distinct per node (1-65535; 0: derived from --name)")
	f.DurationVar(&cfg.TicketRotation, "tls-ticket-rotation", node.DefaultTicketRotation, "how often the leader rotates the cluster's TLS session-ticket keys (3 are kept)")
	f.BoolVar(&dev, "dev", false, "run a single node on loopback with a temporary data dir")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "format of the log on standard error: text or json (one JSON object a line)")
	f.StringVar(&accessLog, "access-log", "-", "where http and https listeners with accessLog enabled write a JSON line per request: - (standard output) or a file, appended to and reopened on SIGHUP")
	return cmd
}

// addrFlag is a netip.Addr flag.
type addrFlag struct{ a *netip.Addr }

func (f addrFlag) String() string {
	if f.a == nil || !f.a.IsValid() {
		return ""
	}
	return f.a.String()
}
func (f addrFlag) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	*f.a = a
	return nil
}
func (f addrFlag) Type() string { return "address" }

// addrListFlag is a repeatable netip.Addr flag.
type addrListFlag struct{ as *[]netip.Addr }

func (f addrListFlag) String() string {
	if f.as == nil {
		return ""
	}
	var ss []string
	for _, a := range *f.as {
		ss = append(ss, a.String())
	}
	return strings.Join(ss, ",")
}
func (f addrListFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*f.as = append(*f.as, a)
	}
	return nil
}
func (f addrListFlag) Type() string { return "addresses" }

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}
