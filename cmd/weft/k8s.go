package main

import (
	"cmp"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftlb/weft/k8s"
)

func newK8sControllerCmd(cf *clientFlags) *cobra.Command {
	var (
		cfg                 k8s.Config
		kubeconfig          string
		logLevel, logFormat string
	)
	cmd := &cobra.Command{
		Use:   "k8s-controller",
		Short: "Serve Kubernetes Services of type LoadBalancer with Weft",
		Long: `Serve Kubernetes Services of type LoadBalancer whose spec.loadBalancerClass is --class
(weft.dev/lb): each becomes a Weft load balancer with a VIP from an AddressPool and one pool per
Service port, whose members are the ready endpoints of its EndpointSlices. The VIP is written to
status.loadBalancer.ingress; a finalizer deletes the Weft objects with the Service. Replicas
elect a leader with a Lease. Annotations: weft.dev/address-pool, weft.dev/vip, weft.dev/zones
("primary,backup..."), weft.dev/region, weft.dev/mode (fullnat, dsr, tunnel), weft.dev/scheduler
(maglev, source-hash). It talks to Weft with --addr, --token (an operator token) and --ca-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			if errs := validation.IsDNS1123Label(cfg.ClusterName); len(errs) > 0 {
				return fmt.Errorf("--cluster-name: %q: %s", cfg.ClusterName, errs[0])
			}
			// An empty path and no KUBECONFIG is the in-cluster config.
			cfg.Kube, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig: %w", err)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			cfg.Weft, cfg.Log = c.LB, log
			log.Info("k8s-controller starting", "class", cfg.Class, "weft", cf.addr, "lease", cfg.LeaseNamespace+"/"+cfg.LeaseName)
			return k8s.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (KUBECONFIG; default: the in-cluster config)")
	f.StringVar(&cfg.Class, "class", k8s.DefaultClass, "the spec.loadBalancerClass served")
	f.BoolVar(&cfg.ClaimUnclassed, "claim-unclassed", false, "also serve LoadBalancer Services that set no loadBalancerClass")
	f.StringVar(&cfg.ClusterName, "cluster-name", "k8s", "prefix of the Weft objects' names, so that clusters can share Weft (a DNS label)")
	f.StringVar(&cfg.DefaultAddressPool, "address-pool", "", "AddressPool for Services without the weft.dev/address-pool annotation")
	f.StringVar(&cfg.LeaseNamespace, "lease-namespace", cmp.Or(os.Getenv("POD_NAMESPACE"), "kube-system"), "namespace of the leader-election Lease (POD_NAMESPACE)")
	f.StringVar(&cfg.LeaseName, "lease-name", "weft-k8s-controller", "name of the leader-election Lease")
	f.DurationVar(&cfg.LeaseDuration, "lease-duration", 15*time.Second, "how long a non-leader waits before taking a Lease not renewed")
	f.DurationVar(&cfg.RenewDeadline, "renew-deadline", 10*time.Second, "how long the leader retries renewing before it stops reconciling")
	f.DurationVar(&cfg.RetryPeriod, "retry-period", 2*time.Second, "how often candidates try the Lease")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "0", "serve controller metrics here (0: off)")
	f.StringVar(&cfg.HealthAddr, "health-addr", "0", "serve /healthz and /readyz here (0: off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}
