package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/tokens"
)

// joinWait bounds how long a joiner retries a cluster that has no leader.
const joinWait = 30 * time.Second

// joinCluster asks a member to admit this node (kubeadm-style discovery):
// the TLS handshake checks the member's CA against the token's pin before
// the token's secret is sent; the leader returns a signed certificate.
func joinCluster(ctx context.Context, cfg Config, d dataDir) error {
	tok, err := tokens.ParseJoin(cfg.Token)
	if err != nil {
		return err
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, cfg.Name, certHosts(cfg))
	if err != nil {
		return err
	}
	c, err := api.NewClient(api.ClientConfig{Addr: cfg.Join, TLS: pki.PinnedClientTLS(tok.CAPin)})
	if err != nil {
		return err
	}
	defer c.Close()
	req := &weftv1.JoinRequest{
		Token: cfg.Token, CsrPem: string(csr), Name: cfg.Name, Region: cfg.Region, Zone: cfg.Zone,
		RaftAddress: cfg.RaftAdvertise, ApiAddress: cfg.APIAdvertise, GossipAddress: cfg.GossipAdvertise,
	}
	deadline := time.Now().Add(joinWait)
	for {
		res, err := c.Cluster.Join(ctx, connect.NewRequest(req))
		if err == nil {
			cfg.Logger.Info("joined cluster", "via", cfg.Join, "token", tok.ID)
			return d.writeNode(identityOf(cfg), []byte(res.Msg.GetCaPem()), []byte(res.Msg.GetCertificatePem()), keyPEM)
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().After(deadline) {
			return fmt.Errorf("join via %s: %w", cfg.Join, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
