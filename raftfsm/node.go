package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// upsertNode stores a node; its version becomes the log index.
func (tx *writeTxn) upsertNode(cmd *statev1.UpsertNodeCommand) (*weftv1.Node, error) {
	n := cmd.GetNode()
	name := n.GetMetadata().GetName()
	if name == "" {
		return nil, stateErrorf(Invalid, "node: metadata.name is not set")
	}
	old, err := tx.node(name)
	if err != nil {
		return nil, err
	}
	md := n.GetMetadata()
	md.Version, md.CreateIndex = tx.index, tx.index
	if old != nil {
		md.CreateIndex = old.GetMetadata().GetCreateIndex()
	}
	if err := tx.txn.Insert(tableNodes, n); err != nil {
		return nil, fmt.Errorf("insert node %q: %w", name, err)
	}
	return proto.CloneOf(n), nil
}

func (tx *writeTxn) deleteNode(cmd *statev1.DeleteNodeCommand) (uint64, error) {
	n, err := tx.node(cmd.GetName())
	if err != nil {
		return 0, err
	}
	if n == nil {
		return 0, stateErrorf(NotFound, "node %q not found", cmd.GetName())
	}
	if err := tx.txn.Delete(tableNodes, n); err != nil {
		return 0, fmt.Errorf("delete node %q: %w", cmd.GetName(), err)
	}
	return tx.index, nil
}

// setNodeDrain sets the drain flag of a node. Stored rows are never mutated
// (readers hold them), so the node is cloned.
func (tx *writeTxn) setNodeDrain(cmd *statev1.SetNodeDrainCommand) (*weftv1.Node, error) {
	old, err := tx.node(cmd.GetName())
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, stateErrorf(NotFound, "node %q not found", cmd.GetName())
	}
	n := proto.CloneOf(old)
	if n.Spec == nil {
		n.Spec = &weftv1.NodeSpec{}
	}
	n.Spec.Drain = cmd.GetDrain()
	n.Metadata.Version = tx.index
	if err := tx.txn.Insert(tableNodes, n); err != nil {
		return nil, fmt.Errorf("insert node %q: %w", cmd.GetName(), err)
	}
	return proto.CloneOf(n), nil
}

func (tx *writeTxn) node(name string) (*weftv1.Node, error) {
	raw, err := tx.txn.First(tableNodes, indexID, name)
	if err != nil {
		return nil, fmt.Errorf("look up node %q: %w", name, err)
	}
	n, _ := raw.(*weftv1.Node)
	return n, nil
}

// Node returns the named node, or nil.
func (s *State) Node(name string) *weftv1.Node {
	return getRow[*weftv1.Node](s, tableNodes, name)
}

// Nodes returns every node, sorted by name.
func (s *State) Nodes() []*weftv1.Node {
	return listRows[*weftv1.Node](s, tableNodes)
}
