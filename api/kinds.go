package api

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
)

// resourceMessage is a resource kind's message.
type resourceMessage interface {
	proto.Message
	GetMetadata() *weftv1.Metadata
}

// kind ties a resource message type to its place in weftv1.Resource, so the
// twenty-five per-kind RPCs share one implementation each of get, list, write
// and delete.
type kind[T resourceMessage] struct {
	name   string // raftfsm.Kind*
	field  string // the request field that carries it, as its JSON names it
	wrap   func(T) *weftv1.Resource
	unwrap func(*weftv1.Resource) T
}

var (
	loadBalancers = kind[*weftv1.LoadBalancer]{raftfsm.KindLoadBalancer, "loadBalancer",
		func(x *weftv1.LoadBalancer) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: x}}
		}, (*weftv1.Resource).GetLoadBalancer}
	pools = kind[*weftv1.Pool]{raftfsm.KindPool, "pool",
		func(x *weftv1.Pool) *weftv1.Resource { return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: x}} },
		(*weftv1.Resource).GetPool}
	certificates = kind[*weftv1.Certificate]{raftfsm.KindCertificate, "certificate",
		func(x *weftv1.Certificate) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: x}}
		}, (*weftv1.Resource).GetCertificate}
	dnsRecords = kind[*weftv1.DNSRecord]{raftfsm.KindDNSRecord, "dnsRecord",
		func(x *weftv1.DNSRecord) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: x}}
		}, (*weftv1.Resource).GetDnsRecord}
	addressPools = kind[*weftv1.AddressPool]{raftfsm.KindAddressPool, "addressPool",
		func(x *weftv1.AddressPool) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_AddressPool{AddressPool: x}}
		}, (*weftv1.Resource).GetAddressPool}
)

type lbMethod[Req, Res any] func(weftv1connect.LoadBalancerServiceClient, context.Context, *connect.Request[Req]) (*connect.Response[Res], error)

func getKind[T resourceMessage, Res any](ctx context.Context, s *Server, req *connect.Request[weftv1.GetRequest],
	k kind[T], m lbMethod[weftv1.GetRequest, Res], resp func(T) *Res,
) (*connect.Response[Res], error) {
	return serve(ctx, s, req, readAccess(req.Msg.GetStale()), lbCall(m), func() (*Res, error) {
		r, err := s.get(k.name, req.Msg.GetName())
		if err != nil {
			return nil, err
		}
		return resp(k.unwrap(r)), nil
	})
}

// listKind answers one page of a kind's resources: those after the page
// token that match the selector, at most limit of them (0: all), and the
// token of the next page when more may remain.
func listKind[T resourceMessage, Res any](ctx context.Context, s *Server, req *connect.Request[weftv1.ListRequest],
	k kind[T], m lbMethod[weftv1.ListRequest, Res], resp func(items []T, index uint64, next string) *Res,
) (*connect.Response[Res], error) {
	sel, err := parseSelector(req.Msg.GetSelector())
	if err != nil {
		return nil, invalidArgument("%v", err)
	}
	after, err := parsePageToken(req.Msg.GetPageToken())
	if err != nil {
		return nil, invalidArgument("%v", err)
	}
	limit := int(req.Msg.GetLimit())
	return serve(ctx, s, req, readAccess(req.Msg.GetStale()), lbCall(m), func() (*Res, error) {
		st := s.fsm.State()
		var rs []*weftv1.Resource
		more := false
		st.ResourcesAfter(k.name, after, func(r *weftv1.Resource) bool {
			if !sel.matches(k.unwrap(r).GetMetadata().GetLabels()) {
				return true
			}
			if limit > 0 && len(rs) == limit {
				more = true
				return false
			}
			rs = append(rs, redact(r))
			return true
		})
		s.observe(rs)
		items := make([]T, 0, len(rs))
		for _, r := range rs {
			items = append(items, k.unwrap(r))
		}
		next := ""
		if more {
			next = pageToken(items[len(items)-1].GetMetadata().GetName())
		}
		return resp(items, st.Index(), next), nil
	})
}

func writeKind[T resourceMessage, Req, Res any](ctx context.Context, s *Server, req *connect.Request[Req],
	k kind[T], mode statev1.WriteMode, m lbMethod[Req, Res], in func(*Req) T, resp func(T) *Res,
) (*connect.Response[Res], error) {
	return serve(ctx, s, req, write, lbCall(m), func() (*Res, error) {
		x := in(req.Msg)
		if !x.ProtoReflect().IsValid() {
			return nil, invalidArgument("%s: required", k.field)
		}
		r, err := s.writeOne(ctx, mode, k.wrap(x))
		if err != nil {
			return nil, err
		}
		return resp(k.unwrap(r)), nil
	})
}

func deleteKind[T resourceMessage](ctx context.Context, s *Server, req *connect.Request[weftv1.DeleteRequest],
	k kind[T], m lbMethod[weftv1.DeleteRequest, weftv1.DeleteResponse],
) (*connect.Response[weftv1.DeleteResponse], error) {
	return serve(ctx, s, req, write, lbCall(m), func() (*weftv1.DeleteResponse, error) {
		return s.delete(ctx, k.name, req.Msg)
	})
}

// lbService implements weftv1connect.LoadBalancerServiceHandler.
type lbService struct{ s *Server }

var _ weftv1connect.LoadBalancerServiceHandler = (*lbService)(nil)

const (
	create = statev1.WriteMode_WRITE_MODE_CREATE
	update = statev1.WriteMode_WRITE_MODE_UPDATE
)

type lbc = weftv1connect.LoadBalancerServiceClient

func (h *lbService) GetLoadBalancer(ctx context.Context, req *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetLoadBalancerResponse], error) {
	return getKind(ctx, h.s, req, loadBalancers, lbc.GetLoadBalancer,
		func(x *weftv1.LoadBalancer) *weftv1.GetLoadBalancerResponse {
			return &weftv1.GetLoadBalancerResponse{LoadBalancer: x}
		})
}

func (h *lbService) ListLoadBalancers(ctx context.Context, req *connect.Request[weftv1.ListRequest]) (*connect.Response[weftv1.ListLoadBalancersResponse], error) {
	return listKind(ctx, h.s, req, loadBalancers, lbc.ListLoadBalancers,
		func(xs []*weftv1.LoadBalancer, index uint64, next string) *weftv1.ListLoadBalancersResponse {
			return &weftv1.ListLoadBalancersResponse{LoadBalancers: xs, Index: index, NextPageToken: next}
		})
}

func (h *lbService) CreateLoadBalancer(ctx context.Context, req *connect.Request[weftv1.CreateLoadBalancerRequest]) (*connect.Response[weftv1.CreateLoadBalancerResponse], error) {
	return writeKind(ctx, h.s, req, loadBalancers, create, lbc.CreateLoadBalancer,
		(*weftv1.CreateLoadBalancerRequest).GetLoadBalancer,
		func(x *weftv1.LoadBalancer) *weftv1.CreateLoadBalancerResponse {
			return &weftv1.CreateLoadBalancerResponse{LoadBalancer: x}
		})
}

func (h *lbService) UpdateLoadBalancer(ctx context.Context, req *connect.Request[weftv1.UpdateLoadBalancerRequest]) (*connect.Response[weftv1.UpdateLoadBalancerResponse], error) {
	return writeKind(ctx, h.s, req, loadBalancers, update, lbc.UpdateLoadBalancer,
		(*weftv1.UpdateLoadBalancerRequest).GetLoadBalancer,
		func(x *weftv1.LoadBalancer) *weftv1.UpdateLoadBalancerResponse {
			return &weftv1.UpdateLoadBalancerResponse{LoadBalancer: x}
		})
}

func (h *lbService) DeleteLoadBalancer(ctx context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	return deleteKind(ctx, h.s, req, loadBalancers, lbc.DeleteLoadBalancer)
}

func (h *lbService) GetPool(ctx context.Context, req *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetPoolResponse], error) {
	return getKind(ctx, h.s, req, pools, lbc.GetPool,
		func(x *weftv1.Pool) *weftv1.GetPoolResponse { return &weftv1.GetPoolResponse{Pool: x} })
}

func (h *lbService) ListPools(ctx context.Context, req *connect.Request[weftv1.ListRequest]) (*connect.Response[weftv1.ListPoolsResponse], error) {
	return listKind(ctx, h.s, req, pools, lbc.ListPools,
		func(xs []*weftv1.Pool, index uint64, next string) *weftv1.ListPoolsResponse {
			return &weftv1.ListPoolsResponse{Pools: xs, Index: index, NextPageToken: next}
		})
}

func (h *lbService) CreatePool(ctx context.Context, req *connect.Request[weftv1.CreatePoolRequest]) (*connect.Response[weftv1.CreatePoolResponse], error) {
	return writeKind(ctx, h.s, req, pools, create, lbc.CreatePool, (*weftv1.CreatePoolRequest).GetPool,
		func(x *weftv1.Pool) *weftv1.CreatePoolResponse { return &weftv1.CreatePoolResponse{Pool: x} })
}

func (h *lbService) UpdatePool(ctx context.Context, req *connect.Request[weftv1.UpdatePoolRequest]) (*connect.Response[weftv1.UpdatePoolResponse], error) {
	return writeKind(ctx, h.s, req, pools, update, lbc.UpdatePool, (*weftv1.UpdatePoolRequest).GetPool,
		func(x *weftv1.Pool) *weftv1.UpdatePoolResponse { return &weftv1.UpdatePoolResponse{Pool: x} })
}

func (h *lbService) DeletePool(ctx context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	return deleteKind(ctx, h.s, req, pools, lbc.DeletePool)
}

func (h *lbService) GetCertificate(ctx context.Context, req *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetCertificateResponse], error) {
	return getKind(ctx, h.s, req, certificates, lbc.GetCertificate,
		func(x *weftv1.Certificate) *weftv1.GetCertificateResponse {
			return &weftv1.GetCertificateResponse{Certificate: x}
		})
}

func (h *lbService) ListCertificates(ctx context.Context, req *connect.Request[weftv1.ListRequest]) (*connect.Response[weftv1.ListCertificatesResponse], error) {
	return listKind(ctx, h.s, req, certificates, lbc.ListCertificates,
		func(xs []*weftv1.Certificate, index uint64, next string) *weftv1.ListCertificatesResponse {
			return &weftv1.ListCertificatesResponse{Certificates: xs, Index: index, NextPageToken: next}
		})
}

func (h *lbService) CreateCertificate(ctx context.Context, req *connect.Request[weftv1.CreateCertificateRequest]) (*connect.Response[weftv1.CreateCertificateResponse], error) {
	return writeKind(ctx, h.s, req, certificates, create, lbc.CreateCertificate,
		(*weftv1.CreateCertificateRequest).GetCertificate,
		func(x *weftv1.Certificate) *weftv1.CreateCertificateResponse {
			return &weftv1.CreateCertificateResponse{Certificate: x}
		})
}

func (h *lbService) UpdateCertificate(ctx context.Context, req *connect.Request[weftv1.UpdateCertificateRequest]) (*connect.Response[weftv1.UpdateCertificateResponse], error) {
	return writeKind(ctx, h.s, req, certificates, update, lbc.UpdateCertificate,
		(*weftv1.UpdateCertificateRequest).GetCertificate,
		func(x *weftv1.Certificate) *weftv1.UpdateCertificateResponse {
			return &weftv1.UpdateCertificateResponse{Certificate: x}
		})
}

func (h *lbService) DeleteCertificate(ctx context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	return deleteKind(ctx, h.s, req, certificates, lbc.DeleteCertificate)
}

func (h *lbService) GetDNSRecord(ctx context.Context, req *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetDNSRecordResponse], error) {
	return getKind(ctx, h.s, req, dnsRecords, lbc.GetDNSRecord,
		func(x *weftv1.DNSRecord) *weftv1.GetDNSRecordResponse {
			return &weftv1.GetDNSRecordResponse{DnsRecord: x}
		})
}

// QueryDNS is answered by this node's DNS server, never forwarded: the
// caller asks the node it wants to hear from.
func (h *lbService) QueryDNS(ctx context.Context, req *connect.Request[weftv1.QueryDNSRequest]) (*connect.Response[weftv1.QueryDNSResponse], error) {
	if h.s.cfg.DNSQuery == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("node %s runs no DNS server (start it with --dns-addr)", h.s.cfg.NodeName))
	}
	res, err := h.s.cfg.DNSQuery(req.Msg)
	if err != nil {
		return nil, toConnect(err)
	}
	res.Node = h.s.cfg.NodeName
	return connect.NewResponse(res), nil
}

func (h *lbService) ListDNSRecords(ctx context.Context, req *connect.Request[weftv1.ListRequest]) (*connect.Response[weftv1.ListDNSRecordsResponse], error) {
	return listKind(ctx, h.s, req, dnsRecords, lbc.ListDNSRecords,
		func(xs []*weftv1.DNSRecord, index uint64, next string) *weftv1.ListDNSRecordsResponse {
			return &weftv1.ListDNSRecordsResponse{DnsRecords: xs, Index: index, NextPageToken: next}
		})
}

func (h *lbService) CreateDNSRecord(ctx context.Context, req *connect.Request[weftv1.CreateDNSRecordRequest]) (*connect.Response[weftv1.CreateDNSRecordResponse], error) {
	return writeKind(ctx, h.s, req, dnsRecords, create, lbc.CreateDNSRecord,
		(*weftv1.CreateDNSRecordRequest).GetDnsRecord,
		func(x *weftv1.DNSRecord) *weftv1.CreateDNSRecordResponse {
			return &weftv1.CreateDNSRecordResponse{DnsRecord: x}
		})
}

func (h *lbService) UpdateDNSRecord(ctx context.Context, req *connect.Request[weftv1.UpdateDNSRecordRequest]) (*connect.Response[weftv1.UpdateDNSRecordResponse], error) {
	return writeKind(ctx, h.s, req, dnsRecords, update, lbc.UpdateDNSRecord,
		(*weftv1.UpdateDNSRecordRequest).GetDnsRecord,
		func(x *weftv1.DNSRecord) *weftv1.UpdateDNSRecordResponse {
			return &weftv1.UpdateDNSRecordResponse{DnsRecord: x}
		})
}

func (h *lbService) DeleteDNSRecord(ctx context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	return deleteKind(ctx, h.s, req, dnsRecords, lbc.DeleteDNSRecord)
}

func (h *lbService) GetAddressPool(ctx context.Context, req *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetAddressPoolResponse], error) {
	return getKind(ctx, h.s, req, addressPools, lbc.GetAddressPool,
		func(x *weftv1.AddressPool) *weftv1.GetAddressPoolResponse {
			return &weftv1.GetAddressPoolResponse{AddressPool: x}
		})
}

func (h *lbService) ListAddressPools(ctx context.Context, req *connect.Request[weftv1.ListRequest]) (*connect.Response[weftv1.ListAddressPoolsResponse], error) {
	return listKind(ctx, h.s, req, addressPools, lbc.ListAddressPools,
		func(xs []*weftv1.AddressPool, index uint64, next string) *weftv1.ListAddressPoolsResponse {
			return &weftv1.ListAddressPoolsResponse{AddressPools: xs, Index: index, NextPageToken: next}
		})
}

func (h *lbService) CreateAddressPool(ctx context.Context, req *connect.Request[weftv1.CreateAddressPoolRequest]) (*connect.Response[weftv1.CreateAddressPoolResponse], error) {
	return writeKind(ctx, h.s, req, addressPools, create, lbc.CreateAddressPool,
		(*weftv1.CreateAddressPoolRequest).GetAddressPool,
		func(x *weftv1.AddressPool) *weftv1.CreateAddressPoolResponse {
			return &weftv1.CreateAddressPoolResponse{AddressPool: x}
		})
}

func (h *lbService) UpdateAddressPool(ctx context.Context, req *connect.Request[weftv1.UpdateAddressPoolRequest]) (*connect.Response[weftv1.UpdateAddressPoolResponse], error) {
	return writeKind(ctx, h.s, req, addressPools, update, lbc.UpdateAddressPool,
		(*weftv1.UpdateAddressPoolRequest).GetAddressPool,
		func(x *weftv1.AddressPool) *weftv1.UpdateAddressPoolResponse {
			return &weftv1.UpdateAddressPoolResponse{AddressPool: x}
		})
}

func (h *lbService) DeleteAddressPool(ctx context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	return deleteKind(ctx, h.s, req, addressPools, lbc.DeleteAddressPool)
}
