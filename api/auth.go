package api

import (
	"context"
	"crypto/tls"
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
type tlsKey struct{}

// CallerFrom returns the authenticated caller of a request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// withTLSState hands the connection's TLS state to the interceptors, which
// Connect does not expose.
func withTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r = r.WithContext(context.WithValue(r.Context(), tlsKey{}, r.TLS))
		}
		next.ServeHTTP(w, r)
	})
}

// rank orders roles: a caller may call what needs its role or a lower one.
var rank = map[tokens.Role]int{tokens.RoleViewer: 1, tokens.RoleOperator: 2, tokens.RoleAdmin: 3}

// publicProcedures need no credentials: Join carries its own join token.
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
		method == "Watch", method == "Status":
		return tokens.RoleViewer
	case strings.HasPrefix(method, "Create"), strings.HasPrefix(method, "Update"),
		strings.HasPrefix(method, "Delete"), method == "Apply",
		method == "DrainNode", method == "UndrainNode", method == "TransferLeadership":
		return tokens.RoleOperator
	}
	return tokens.RoleAdmin
}

// authInterceptor authenticates every call (bearer token, or a client
// certificate signed by the cluster CA) and checks the caller's role.
type authInterceptor struct {
	fsm *raftfsm.FSM
	now func() time.Time
}

var _ connect.Interceptor = (*authInterceptor)(nil)

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.authorize(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authorize(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

func (a *authInterceptor) authorize(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	if publicProcedures[procedure] {
		return ctx, nil
	}
	caller, err := a.authenticate(ctx, h)
	if err != nil {
		return ctx, err
	}
	need := requiredRole(procedure)
	if rank[caller.Role] < rank[need] {
		return ctx, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("role %s may not call %s (needs %s)", caller.Role, procedure, need))
	}
	return context.WithValue(ctx, callerKey{}, caller), nil
}

func (a *authInterceptor) authenticate(ctx context.Context, h http.Header) (Caller, error) {
	if auth := h.Get("Authorization"); auth != "" {
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
	if cs, ok := ctx.Value(tlsKey{}).(*tls.ConnectionState); ok {
		// The TLS layer verified the chain against the cluster CA; only
		// nodes hold such certificates.
		if name, ok := pki.NodeName(cs); ok {
			return Caller{Node: name, Role: tokens.RoleAdmin}, nil
		}
	}
	return Caller{}, unauthenticated("no credentials: set a bearer token (WEFT_TOKEN)")
}

func unauthenticated(format string, args ...any) error {
	return connect.NewError(connect.CodeUnauthenticated, fmt.Errorf(format, args...))
}
