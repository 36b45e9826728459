package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcMember is grpc-go's test service: UnaryCall echoes its payload with
// a trailer, answers the status it is asked for, or, asked for a payload
// of -1 bytes, checks that the call has a deadline and waits for its
// context to end; FullDuplexCall answers each
// message with one of the size asked for. ended gets the context error of
// each call that ended because its context did.
type grpcMember struct {
	testpb.UnimplementedTestServiceServer
	ended chan error
}

func (m *grpcMember) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s := req.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	if req.ResponseSize < 0 {
		if _, ok := ctx.Deadline(); !ok {
			return nil, status.Error(codes.FailedPrecondition, "the call came without its deadline (grpc-timeout)")
		}
		<-ctx.Done()
		m.ended <- ctx.Err()
		return nil, ctx.Err()
	}
	grpc.SetTrailer(ctx, metadata.Pairs("weft-trailer", "unary"))
	return &testpb.SimpleResponse{Payload: req.Payload}, nil
}

func (m *grpcMember) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(metadata.Pairs("weft-trailer", "stream"))
			return nil
		}
		if err != nil {
			// The proxy passed the client's cancellation on.
			m.ended <- stream.Context().Err()
			return err
		}
		for _, p := range req.ResponseParameters {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: bytes.Repeat([]byte{'s'}, int(p.Size))}}); err != nil {
				return err
			}
		}
	}
}

// startGRPCMember serves grpcMember over h2c, or TLS with a self-signed
// certificate.
func startGRPCMember(t *testing.T, useTLS bool) (*grpcMember, Member) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if useTLS {
		cert := selfSigned(t, false, "member.test")
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	}
	gs := grpc.NewServer(opts...)
	m := &grpcMember{ended: make(chan error, 16)}
	testpb.RegisterTestServiceServer(gs, m)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return m, Member{Addr: mustAddrPort(t, ln.Addr().String()), Weight: 100, Healthy: true}
}

// TestGRPCThroughProxy runs grpc-go's client through the proxy to
// grpc-go's server, on an h2c and a TLS listener to an h2c member and on
// an h2c listener to a TLS member: unary calls with a 1 MiB payload and a
// trailer, a status other than OK, a bidirectional stream, a deadline
// and a cancellation the member must see.
func TestGRPCThroughProxy(t *testing.T) {
	h2c, h2cMember := startGRPCMember(t, false)
	tlsm, tlsMember := startGRPCMember(t, true)
	plain, tlsAddr, toTLS := freeAddr(t, "127.0.0.11"), freeAddr(t, "127.0.0.11"), freeAddr(t, "127.0.0.11")
	startProxy(t, Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "grpc.test")},
		Pools: map[string]Pool{
			"h2c": {Protocol: ProtoH2C, Members: []Member{h2cMember}},
			"tls": {Protocol: ProtoH2, TLSInsecure: true, Members: []Member{tlsMember}},
		},
		Listeners: []Listener{
			{Name: "h2c", Addr: plain, HTTP2: true, DefaultPool: "h2c"},
			{Name: "tls", Addr: tlsAddr, TLS: true, HTTP2: true, Certificates: []string{"c"}, DefaultPool: "h2c"},
			{Name: "to-tls", Addr: toTLS, HTTP2: true, DefaultPool: "tls"},
		},
	})
	clientTLS := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	for _, tc := range []struct {
		name   string
		addr   string
		creds  credentials.TransportCredentials
		member *grpcMember
	}{
		{"h2c to h2c", plain.String(), insecure.NewCredentials(), h2c},
		{"tls to h2c", tlsAddr.String(), clientTLS, h2c},
		{"h2c to tls", toTLS.String(), insecure.NewCredentials(), tlsm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := grpc.NewClient(tc.addr, grpc.WithTransportCredentials(tc.creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := testpb.NewTestServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			t.Run("unary", func(t *testing.T) {
				body := bytes.Repeat([]byte("weft"), 256<<10)
				var trailer metadata.MD
				resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}}, grpc.Trailer(&trailer))
				if err != nil {
					t.Fatalf("UnaryCall: %v", err)
				}
				if !bytes.Equal(resp.Payload.GetBody(), body) {
					t.Errorf("payload: got %d bytes, want the %d sent", len(resp.Payload.GetBody()), len(body))
				}
				if got := trailer.Get("weft-trailer"); len(got) != 1 || got[0] != "unary" {
					t.Errorf("trailer weft-trailer = %v, want [unary]", got)
				}
			})
			t.Run("status", func(t *testing.T) {
				_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
				if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "no such thing" {
					t.Errorf("status = %v %q, want NotFound %q", s.Code(), s.Message(), "no such thing")
				}
			})
			t.Run("bidi stream", func(t *testing.T) {
				stream, err := client.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 100 {
					size := int32(1 + i*1000)
					if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: size}}}); err != nil {
						t.Fatalf("send %d: %v", i, err)
					}
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("recv %d: %v", i, err)
					}
					if got := len(resp.Payload.GetBody()); got != int(size) {
						t.Fatalf("message %d: %d bytes, want %d", i, got, size)
					}
				}
				if err := stream.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
					t.Fatalf("after CloseSend: %v, want EOF (status OK)", err)
				}
				if got := stream.Trailer().Get("weft-trailer"); len(got) != 1 || got[0] != "stream" {
					t.Errorf("trailer weft-trailer = %v, want [stream]", got)
				}
			})
			t.Run("deadline", func(t *testing.T) {
				dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer dcancel()
				start := time.Now()
				_, err := client.UnaryCall(dctx, &testpb.SimpleRequest{ResponseSize: -1})
				// The member has the same deadline (grpc-timeout) and
				// grpc-go resets the stream at it: when that reset beats
				// the client's own timer, the proxy has no response to
				// relay and answers 502, Unavailable to the client (as
				// Envoy and nginx do).
				if s := status.Convert(err); s.Code() != codes.DeadlineExceeded && s.Code() != codes.Unavailable {
					t.Errorf("status = %v %q, want DeadlineExceeded (or Unavailable)", s.Code(), s.Message())
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("the deadline of 300ms ended the call after %v", d)
				}
				waitEnded(t, tc.member, context.DeadlineExceeded, context.Canceled)
			})
			t.Run("cancel stream", func(t *testing.T) {
				sctx, scancel := context.WithCancel(ctx)
				stream, err := client.FullDuplexCall(sctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}}); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
				scancel()
				if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
					t.Errorf("after cancel: %v, want Canceled", err)
				}
				waitEnded(t, tc.member, context.Canceled)
			})
		})
	}
}

// waitEnded waits for the member to report a call that ended with one of
// the context errors in want.
func waitEnded(t *testing.T, m *grpcMember, want ...error) {
	t.Helper()
	select {
	case err := <-m.ended:
		for _, w := range want {
			if errors.Is(err, w) {
				return
			}
		}
		t.Errorf("the member's call ended with %v, want one of %v", err, want)
	case <-time.After(5 * time.Second):
		t.Errorf("the member's call did not end within 5s of the client's")
	}
}
