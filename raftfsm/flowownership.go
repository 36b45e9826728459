package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

// setFlowOwnership replaces the flow-ownership table; its epoch becomes
// the entry's index, so every replica gives it the same one. The table
// must be whole: replicas and owners for every bucket, every owner index
// naming a node.
func (tx *writeTxn) setFlowOwnership(cmd *statev1.SetFlowOwnershipCommand) (uint64, error) {
	o := cmd.GetOwnership()
	n := len(o.GetNodes())
	switch {
	case o == nil:
		return 0, stateErrorf(Invalid, "set flow ownership: no table")
	case o.GetReplicas() == 0 || n == 0:
		return 0, stateErrorf(Invalid, "set flow ownership: no owners")
	case len(o.GetOwners())%int(2*o.GetReplicas()) != 0 || len(o.GetOwners()) == 0:
		return 0, stateErrorf(Invalid, "set flow ownership: %d bytes of owners is not a whole number of buckets of %d", len(o.GetOwners()), o.GetReplicas())
	}
	owners := o.GetOwners()
	for i := 0; i < len(owners); i += 2 {
		if idx := int(owners[i])<<8 | int(owners[i+1]); idx >= n {
			return 0, stateErrorf(Invalid, "set flow ownership: owner index %d names no node (%d nodes)", idx, n)
		}
	}
	row := proto.CloneOf(o)
	row.Epoch = tx.index
	if err := tx.txn.Insert(tableFlowOwnership, row); err != nil {
		return 0, fmt.Errorf("insert flow ownership: %w", err)
	}
	return tx.index, nil
}

// FlowOwnership returns the committed flow-ownership table, or nil before
// the first is committed.
func (s *State) FlowOwnership() *statev1.FlowOwnership {
	raw := s.first(tableFlowOwnership, singletonID)
	if raw == nil {
		return nil
	}
	return raw.(*statev1.FlowOwnership)
}
