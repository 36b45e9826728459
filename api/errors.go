package api

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/validate"
)

// toConnect gives an error from validation, the state store or Raft the
// Connect code a caller can act on. Errors that are already Connect errors
// pass through.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	var fe *validate.FieldError
	if errors.As(err, &fe) {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	var se *raftfsm.StateError
	if errors.As(err, &se) {
		return connect.NewError(stateCode(se.Kind), err)
	}
	switch {
	case errors.Is(err, raftfsm.ErrNotLeader):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("no leader reachable: %w", err))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

func stateCode(k raftfsm.ErrorKind) connect.Code {
	switch k {
	case raftfsm.NotFound:
		return connect.CodeNotFound
	case raftfsm.AlreadyExists:
		return connect.CodeAlreadyExists
	case raftfsm.Conflict:
		return connect.CodeAborted
	case raftfsm.FailedPrecondition:
		return connect.CodeFailedPrecondition
	case raftfsm.Invalid:
		return connect.CodeInvalidArgument
	}
	return connect.CodeInternal
}

func invalidArgument(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func notFound(format string, args ...any) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
}
