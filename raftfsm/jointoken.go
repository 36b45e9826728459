package raftfsm

import (
	"crypto/subtle"
	"fmt"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

func (tx *writeTxn) createJoinToken(cmd *statev1.CreateJoinTokenCommand) (*statev1.JoinTokenRecord, error) {
	rec := cmd.GetRecord()
	id := rec.GetToken().GetId()
	if id == "" {
		return nil, stateErrorf(Invalid, "join token: id is not set")
	}
	old, err := tx.joinToken(id)
	if err != nil {
		return nil, err
	}
	if old != nil {
		return nil, stateErrorf(AlreadyExists, "join token %q already exists", id)
	}
	rec.Token.CreateIndex = tx.index
	if err := tx.txn.Insert(tableJoinTokens, rec); err != nil {
		return nil, fmt.Errorf("insert join token %q: %w", id, err)
	}
	return proto.CloneOf(rec), nil
}

// consumeJoinToken spends one use of a join token. The secret is checked
// first so that a caller without it learns nothing about the token's state.
// A used-up token is kept with zero uses so that it is reported as used up,
// not as unknown.
func (tx *writeTxn) consumeJoinToken(cmd *statev1.ConsumeJoinTokenCommand) (*statev1.JoinTokenRecord, error) {
	old, err := tx.joinToken(cmd.GetId())
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, stateErrorf(NotFound, "join token not found")
	}
	id := cmd.GetId()
	if subtle.ConstantTimeCompare([]byte(old.GetSecretHash()), []byte(cmd.GetSecretHash())) != 1 {
		return nil, stateErrorf(FailedPrecondition, "join token %q: secret does not match", id)
	}
	if exp := old.GetToken().GetExpiresAt(); exp != nil && cmd.GetNowUnixNano() >= exp.AsTime().UnixNano() {
		return nil, stateErrorf(FailedPrecondition, "join token %q has expired", id)
	}
	if old.GetToken().GetUsesRemaining() == 0 {
		return nil, stateErrorf(FailedPrecondition, "join token %q has no uses remaining", id)
	}
	rec := proto.CloneOf(old)
	rec.Token.UsesRemaining--
	if err := tx.txn.Insert(tableJoinTokens, rec); err != nil {
		return nil, fmt.Errorf("insert join token %q: %w", id, err)
	}
	return proto.CloneOf(rec), nil
}

func (tx *writeTxn) revokeJoinToken(cmd *statev1.RevokeJoinTokenCommand) (uint64, error) {
	old, err := tx.joinToken(cmd.GetId())
	if err != nil {
		return 0, err
	}
	if old == nil {
		return 0, stateErrorf(NotFound, "join token %q not found", cmd.GetId())
	}
	if err := tx.txn.Delete(tableJoinTokens, old); err != nil {
		return 0, fmt.Errorf("delete join token %q: %w", cmd.GetId(), err)
	}
	return tx.index, nil
}

func (tx *writeTxn) joinToken(id string) (*statev1.JoinTokenRecord, error) {
	raw, err := tx.txn.First(tableJoinTokens, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("look up join token %q: %w", id, err)
	}
	rec, _ := raw.(*statev1.JoinTokenRecord)
	return rec, nil
}

// JoinToken returns the join token record with the given id, or nil.
func (s *State) JoinToken(id string) *statev1.JoinTokenRecord {
	return getRow[*statev1.JoinTokenRecord](s, tableJoinTokens, id)
}

// JoinTokens returns every join token record, sorted by id.
func (s *State) JoinTokens() []*statev1.JoinTokenRecord {
	return listRows[*statev1.JoinTokenRecord](s, tableJoinTokens)
}
