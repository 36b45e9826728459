package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

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

// rotateTicketKeys puts a new TLS session-ticket key first and keeps the
// newest cmd.Keep. It is a compare-and-set on the current first key's
// creation time, so a rotation proposed from a stale view (two leaders in
// a row) is refused instead of rotating twice.
func (tx *writeTxn) rotateTicketKeys(cmd *statev1.RotateTicketKeysCommand) (uint64, error) {
	if len(cmd.GetKey().GetKey()) != 32 {
		return 0, stateErrorf(Invalid, "rotate ticket keys: key is %d bytes, want 32", len(cmd.GetKey().GetKey()))
	}
	if cmd.GetKeep() == 0 {
		return 0, stateErrorf(Invalid, "rotate ticket keys: keep is 0")
	}
	raw, err := tx.txn.First(tableSecrets, indexID, singletonID)
	if err != nil {
		return 0, fmt.Errorf("look up cluster secrets: %w", err)
	}
	if raw == nil {
		return 0, stateErrorf(FailedPrecondition, "rotate ticket keys: the cluster is not initialised")
	}
	sec := proto.CloneOf(raw.(*secretsRow).Secrets)
	var current int64
	if len(sec.TicketKeys) > 0 {
		current = sec.TicketKeys[0].GetCreatedUnixNano()
	}
	if current != cmd.GetPreviousCreatedUnixNano() {
		return 0, stateErrorf(Conflict, "rotate ticket keys: the newest key was created at %d, not %d", current, cmd.GetPreviousCreatedUnixNano())
	}
	sec.TicketKeys = append([]*statev1.TicketKey{cmd.GetKey()}, sec.TicketKeys...)
	if len(sec.TicketKeys) > int(cmd.GetKeep()) {
		sec.TicketKeys = sec.TicketKeys[:cmd.GetKeep()]
	}
	if len(sec.CookieKey) == 0 {
		sec.CookieKey = cmd.GetCookieKey()
	}
	if err := tx.txn.Insert(tableSecrets, &secretsRow{Secrets: sec}); err != nil {
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
