package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// Config is what `weft k8s-controller` runs with.
type Config struct {
	Kube *rest.Config
	Weft weftv1connect.LoadBalancerServiceClient
	// Class, ClaimUnclassed and Options: see Reconciler.
	Class          string
	ClaimUnclassed bool
	Options
	// LeaseNamespace and LeaseName are the Lease the replicas elect a
	// leader with; only the leader reconciles.
	LeaseNamespace, LeaseName string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's leader
	// election timers.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// MetricsAddr and HealthAddr serve controller-runtime's metrics and
	// /healthz, /readyz; "0" turns one off.
	MetricsAddr, HealthAddr string
	Log                     *slog.Logger
}

// Run runs the controller until ctx ends. A replica that loses the
// leadership (the API server was away longer than RenewDeadline) stops
// reconciling, and Run starts it again as a candidate, so that one process
// outlives API-server restarts as it would under a kubelet that restarts it.
func Run(ctx context.Context, cfg Config) error {
	logger := logr.FromSlogHandler(cfg.Log.Handler())
	ctrl.SetLogger(logger)
	for {
		err := runOnce(ctx, cfg, logger)
		if ctx.Err() != nil {
			return nil
		}
		cfg.Log.Warn("controller stopped; starting again as a candidate", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.RetryPeriod):
		}
	}
}

func runOnce(ctx context.Context, cfg Config, logger logr.Logger) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build scheme: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg.Kube, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        logger,
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:        cfg.HealthAddr,
		LeaderElection:                true,
		LeaderElectionID:              cfg.LeaseName,
		LeaderElectionNamespace:       cfg.LeaseNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &cfg.LeaseDuration,
		RenewDeadline:                 &cfg.RenewDeadline,
		RetryPeriod:                   &cfg.RetryPeriod,
	})
	if err != nil {
		return fmt.Errorf("new manager: %w", err)
	}
	r := &Reconciler{
		Kube: mgr.GetClient(), Weft: cfg.Weft, Events: mgr.GetEventRecorder("weft-k8s-controller"),
		Class: cfg.Class, ClaimUnclassed: cfg.ClaimUnclassed, Options: cfg.Options,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up controller: %w", err)
	}
	if cfg.HealthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}
