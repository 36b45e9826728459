package raftfsm

import "fmt"

// ErrorKind classifies a StateError so the API can map it to a status code.
type ErrorKind int

// Error kinds returned by the state store.
const (
	// NotFound: the named resource, node or token does not exist.
	NotFound ErrorKind = iota + 1
	// AlreadyExists: a create found the name taken, or an address is in use.
	AlreadyExists
	// Conflict: the expected version does not match the stored one.
	Conflict
	// FailedPrecondition: the write would leave a dangling reference, or a
	// token cannot be used (expired, used up, wrong secret).
	FailedPrecondition
	// Invalid: the command itself is malformed (missing name, duplicate entry).
	Invalid
)

var errorKindNames = map[ErrorKind]string{
	NotFound:           "NotFound",
	AlreadyExists:      "AlreadyExists",
	Conflict:           "Conflict",
	FailedPrecondition: "FailedPrecondition",
	Invalid:            "Invalid",
}

func (k ErrorKind) String() string {
	if name, ok := errorKindNames[k]; ok {
		return name
	}
	return fmt.Sprintf("ErrorKind(%d)", int(k))
}

// StateError is a command rejected by the state store. It is the FSM's
// response on the leader (responses never cross the network), and the
// rejected command changed nothing.
type StateError struct {
	Kind ErrorKind
	Msg  string
}

func (e *StateError) Error() string { return e.Msg }

func stateErrorf(kind ErrorKind, format string, args ...any) *StateError {
	return &StateError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
