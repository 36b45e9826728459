package raftfsm

// The mutual-TLS stream layer under raft's NetworkTransport.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer accepts and dials TLS 1.3 connections. Both ends must show
// a certificate signed by the cluster CA.
type tlsStreamLayer struct {
	net.Listener
	advertise net.Addr
	dialer    *tls.Dialer
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// advertiseAddr is the address other nodes dial, which may differ from the
// one listened on (0.0.0.0, a NAT).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// newTLSStreamLayer listens on bind. base holds the node's certificate and the
// cluster CA (RootCAs, or ClientCAs when RootCAs is nil, and the other way round).
func newTLSStreamLayer(bind, advertise string, base *tls.Config) (*tlsStreamLayer, error) {
	if base == nil {
		return nil, errors.New("raft transport: no TLS configuration")
	}
	roots := base.RootCAs
	if roots == nil {
		roots = base.ClientCAs
	}
	if roots == nil {
		return nil, errors.New("raft transport: TLS configuration has no CA (RootCAs or ClientCAs)")
	}

	server := base.Clone()
	server.MinVersion = tls.VersionTLS13
	server.ClientAuth = tls.RequireAndVerifyClientCert
	if server.ClientCAs == nil {
		server.ClientCAs = roots
	}

	client := base.Clone()
	client.MinVersion = tls.VersionTLS13
	client.RootCAs = roots
	if client.ServerName == "" {
		// Peers are dialled by address, and node certificates name nodes,
		// not the addresses they are reached at (NAT, 0.0.0.0). So the
		// chain is verified against the cluster CA without a host name:
		// any certificate the CA signed is a cluster member.
		client.InsecureSkipVerify = true
		client.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyChain(cs, roots)
		}
	}

	ln, err := tls.Listen("tcp", bind, server)
	if err != nil {
		return nil, fmt.Errorf("raft transport: listen on %s: %w", bind, err)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	return &tlsStreamLayer{
		Listener:  ln,
		advertise: advertiseAddr(advertise),
		dialer:    &tls.Dialer{Config: client},
	}, nil
}

func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verify peer certificate: %w", err)
	}
	return nil
}

func (s *tlsStreamLayer) Addr() net.Addr { return s.advertise }

func (s *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dialer.DialContext(ctx, "tcp", string(addr))
}
