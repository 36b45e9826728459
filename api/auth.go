package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/pki"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/tokens"
)

// Caller is who made a request, once authenticated.
type Caller struct {
	// TokenID is the API token's id, or empty for a node certificate.
	TokenID string
	// Node is the name in a cluster-signed client certificate.
	Node string
	Role tokens.Role
}

type callerKey struct{}

// CallerFrom returns the authenticated caller of a request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// rank orders roles: a caller may call what needs its role or a lower one.
var rank = map[tokens.Role]int{tokens.RoleViewer: 1, tokens.RoleOperator: 2, tokens.RoleAdmin: 3}

// publicProcedures need no credentials: Join carries its own join token.
// gRPC health and reflection are public too: they are mounted without the
// authenticator.
var publicProcedures = map[string]bool{
	weftv1connect.ClusterServiceJoinProcedure: true,
}

// requiredRole is the least role allowed to call a procedure. Reads need a
// viewer, writes an operator, and anything touching credentials or Raft
// membership an admin. Unknown procedures need an admin (fail closed).
func requiredRole(procedure string) tokens.Role {
	method := procedure[strings.LastIndex(procedure, "/")+1:]
	switch {
	case strings.Contains(method, "Token"), method == "RemoveNode":
		return tokens.RoleAdmin
	case strings.HasPrefix(method, "Get"), strings.HasPrefix(method, "List"),
		method == "Watch", method == "Status", method == "QueryDNS":
		return tokens.RoleViewer
	case strings.HasPrefix(method, "Create"), strings.HasPrefix(method, "Update"),
		strings.HasPrefix(method, "Delete"), method == "Apply",
		method == "DrainNode", method == "UndrainNode", method == "TransferLeadership":
		return tokens.RoleOperator
	}
	return tokens.RoleAdmin
}

// authenticator decides who a caller is (bearer token, or a client
// certificate signed by the cluster CA) and whether their role may call the
// procedure, from the request's headers and TLS state alone: a refused
// request's body is never read, so a caller without credentials cannot make
// a node read or buffer anything.
type authenticator struct {
	fsm *raftfsm.FSM
	now func() time.Time
	// errors answers in the caller's protocol (Connect, gRPC, gRPC-Web).
	errors *connect.ErrorWriter
}

// wrap puts the service handler h, mounted at path, behind authentication
// and the role each procedure needs (requiredRole); public procedures pass
// without credentials.
func (a *authenticator) wrap(path string, h http.Handler) (string, http.Handler) {
	return a.wrapRole(path, requiredRole, h)
}

// wrapRole is wrap with the role a request path needs given by need.
func (a *authenticator) wrapRole(path string, need func(path string) tokens.Role, h http.Handler) (string, http.Handler) {
	return path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if publicProcedures[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		caller, err := a.authorize(r, need(r.URL.Path))
		if err != nil {
			refuse(w, r, a.errors, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
	})
}

// authorize authenticates r and checks the caller's role against need, the
// role its procedure (the request path) needs.
func (a *authenticator) authorize(r *http.Request, need tokens.Role) (Caller, error) {
	caller, err := a.authenticate(r)
	if err != nil {
		return Caller{}, err
	}
	if rank[caller.Role] < rank[need] {
		return Caller{}, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("role %s may not call %s (needs %s)", caller.Role, r.URL.Path, need))
	}
	return caller, nil
}

func (a *authenticator) authenticate(r *http.Request) (Caller, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		raw, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return Caller{}, unauthenticated("authorization header: expected \"Bearer <token>\"")
		}
		tok, err := tokens.ParseAPI(strings.TrimSpace(raw))
		if err != nil {
			return Caller{}, unauthenticated("%v", err)
		}
		rec := a.fsm.State().APIToken(tok.ID)
		if rec == nil || !tokens.Verify(rec.SecretHash, tok.Secret) {
			return Caller{}, unauthenticated("api token %s is not valid", tok.ID)
		}
		if exp := rec.GetToken().GetExpiresAt(); exp != nil && !a.now().Before(exp.AsTime()) {
			return Caller{}, unauthenticated("api token %s expired at %s", tok.ID, exp.AsTime().Format(time.RFC3339))
		}
		return Caller{TokenID: tok.ID, Role: tokens.Role(rec.GetToken().GetRole())}, nil
	}
	if r.TLS != nil {
		// The TLS layer verified the chain against the cluster CA; only
		// nodes hold such certificates.
		if name, ok := pki.NodeName(r.TLS); ok {
			return Caller{Node: name, Role: tokens.RoleAdmin}, nil
		}
	}
	return Caller{}, unauthenticated("no credentials: set a bearer token (WEFT_TOKEN)")
}

func unauthenticated(format string, args ...any) error {
	return connect.NewError(connect.CodeUnauthenticated, fmt.Errorf(format, args...))
}
