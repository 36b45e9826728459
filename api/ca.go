package api

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

type clusterCA struct {
	ca  *pki.CA
	pin string
}

// clusterCA loads the CA from the replicated cluster secrets.
func (s *Server) clusterCA() (*clusterCA, error) {
	sec := s.fsm.State().Secrets()
	if sec == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("cluster is not initialised yet"))
	}
	ca, err := pki.LoadCA([]byte(sec.GetCaCertPem()), []byte(sec.GetCaKeyPem()))
	if err != nil {
		return nil, fmt.Errorf("load cluster ca: %w", err)
	}
	return &clusterCA{ca: ca, pin: pki.Pin(ca.Cert)}, nil
}

// FetchStats asks node id for its Raft applied index, for voter placement.
func (s *Server) FetchStats(ctx context.Context, id string) (uint64, error) {
	p, err := s.peer(id)
	if err != nil {
		return 0, err
	}
	res, err := p.cluster.Status(ctx, connect.NewRequest(&weftv1.StatusRequest{}))
	if err != nil {
		return 0, err
	}
	return res.Msg.GetAppliedIndex(), nil
}
