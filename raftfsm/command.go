package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// CommandType is the first byte of every Raft log entry; the protobuf body
// follows. The list is append-only: a type's value is part of the log format.
type CommandType uint8

// IgnoreUnknownFlag is set on command types that a replica which does not know
// them may skip without diverging (for example purely advisory records).
// Types without it make an older replica stop rather than guess.
const IgnoreUnknownFlag CommandType = 128

// Command types. The response each one returns through Raft.Apply is noted
// (messages are copies the caller may keep and change); every type may also
// return a *StateError (or another error) instead.
const (
	// ApplyResourcesType carries a statev1.ApplyResourcesCommand; returns *ApplyResult.
	ApplyResourcesType CommandType = iota
	// DeleteResourceType carries a statev1.DeleteResourceCommand; returns the index (uint64).
	DeleteResourceType
	// InitClusterType carries a statev1.InitClusterCommand; returns the index (uint64).
	InitClusterType
	// UpsertNodeType carries a statev1.UpsertNodeCommand; returns the stored *weftv1.Node.
	UpsertNodeType
	// DeleteNodeType carries a statev1.DeleteNodeCommand; returns the index (uint64).
	DeleteNodeType
	// SetNodeDrainType carries a statev1.SetNodeDrainCommand; returns the stored *weftv1.Node.
	SetNodeDrainType
	// CreateJoinTokenType carries a statev1.CreateJoinTokenCommand; returns the stored *statev1.JoinTokenRecord.
	CreateJoinTokenType
	// ConsumeJoinTokenType carries a statev1.ConsumeJoinTokenCommand; returns the updated *statev1.JoinTokenRecord.
	ConsumeJoinTokenType
	// RevokeJoinTokenType carries a statev1.RevokeJoinTokenCommand; returns the index (uint64).
	RevokeJoinTokenType
	// CreateAPITokenType carries a statev1.CreateAPITokenCommand; returns the stored *statev1.APITokenRecord.
	CreateAPITokenType
	// RevokeAPITokenType carries a statev1.RevokeAPITokenCommand; returns the index (uint64).
	RevokeAPITokenType
	// RotateTicketKeysType carries a statev1.RotateTicketKeysCommand; returns the index (uint64).
	RotateTicketKeysType
	// SetFlowOwnershipType carries a statev1.SetFlowOwnershipCommand; returns the index (uint64), the table's epoch.
	SetFlowOwnershipType
)

var commandNames = map[CommandType]string{
	ApplyResourcesType:   "ApplyResources",
	DeleteResourceType:   "DeleteResource",
	InitClusterType:      "InitCluster",
	UpsertNodeType:       "UpsertNode",
	DeleteNodeType:       "DeleteNode",
	SetNodeDrainType:     "SetNodeDrain",
	CreateJoinTokenType:  "CreateJoinToken",
	ConsumeJoinTokenType: "ConsumeJoinToken",
	RevokeJoinTokenType:  "RevokeJoinToken",
	CreateAPITokenType:   "CreateAPIToken",
	RevokeAPITokenType:   "RevokeAPIToken",
	RotateTicketKeysType: "RotateTicketKeys",
	SetFlowOwnershipType: "SetFlowOwnership",
}

// String returns the command's name, for logs.
func (t CommandType) String() string {
	if name, ok := commandNames[t]; ok {
		return name
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// Encode builds a log entry: the type byte followed by msg in protobuf wire
// form. Marshalling is deterministic so that equal commands give equal entries.
func Encode(t CommandType, msg proto.Message) ([]byte, error) {
	buf := []byte{byte(t)}
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, msg)
	if err != nil {
		return nil, fmt.Errorf("encode %v command: %w", t, err)
	}
	return buf, nil
}
