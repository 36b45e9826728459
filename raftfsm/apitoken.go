package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

func (tx *writeTxn) createAPIToken(cmd *statev1.CreateAPITokenCommand) (*statev1.APITokenRecord, error) {
	rec := cmd.GetRecord()
	id := rec.GetToken().GetId()
	if id == "" {
		return nil, stateErrorf(Invalid, "API token: id is not set")
	}
	old, err := tx.apiToken(id)
	if err != nil {
		return nil, err
	}
	if old != nil {
		return nil, stateErrorf(AlreadyExists, "API token %q already exists", id)
	}
	rec.Token.CreateIndex = tx.index
	if err := tx.txn.Insert(tableAPITokens, rec); err != nil {
		return nil, fmt.Errorf("insert API token %q: %w", id, err)
	}
	return proto.CloneOf(rec), nil
}

func (tx *writeTxn) revokeAPIToken(cmd *statev1.RevokeAPITokenCommand) (uint64, error) {
	old, err := tx.apiToken(cmd.GetId())
	if err != nil {
		return 0, err
	}
	if old == nil {
		return 0, stateErrorf(NotFound, "API token %q not found", cmd.GetId())
	}
	if err := tx.txn.Delete(tableAPITokens, old); err != nil {
		return 0, fmt.Errorf("delete API token %q: %w", cmd.GetId(), err)
	}
	return tx.index, nil
}

func (tx *writeTxn) apiToken(id string) (*statev1.APITokenRecord, error) {
	raw, err := tx.txn.First(tableAPITokens, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("look up API token %q: %w", id, err)
	}
	rec, _ := raw.(*statev1.APITokenRecord)
	return proto.CloneOf(rec), nil
}

// APIToken returns the API token record with the given id, or nil.
func (s *State) APIToken(id string) *statev1.APITokenRecord {
	return getRow[*statev1.APITokenRecord](s, tableAPITokens, id)
}

// APITokens returns every API token record, sorted by id.
func (s *State) APITokens() []*statev1.APITokenRecord {
	return listRows[*statev1.APITokenRecord](s, tableAPITokens)
}
