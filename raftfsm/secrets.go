package raftfsm

import (
	"fmt"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

// initCluster stores the cluster secrets once; a second init is refused so
// that a stray `--init` can never replace the CA of a running cluster.
func (tx *writeTxn) initCluster(cmd *statev1.InitClusterCommand) (uint64, error) {
	if cmd.GetSecrets() == nil {
		return 0, stateErrorf(Invalid, "init cluster: secrets are not set")
	}
	raw, err := tx.txn.First(tableSecrets, indexID, singletonID)
	if err != nil {
		return 0, fmt.Errorf("look up cluster secrets: %w", err)
	}
	if raw != nil {
		return 0, stateErrorf(AlreadyExists, "cluster secrets are already set")
	}
	if err := tx.txn.Insert(tableSecrets, &secretsRow{Secrets: cmd.GetSecrets()}); err != nil {
		return 0, fmt.Errorf("insert cluster secrets: %w", err)
	}
	return tx.index, nil
}

// Secrets returns the cluster secrets, or nil before the cluster is initialised.
func (s *State) Secrets() *statev1.ClusterSecrets {
	raw := s.first(tableSecrets, singletonID)
	if raw == nil {
		return nil
	}
	return raw.(*secretsRow).Secrets
}
