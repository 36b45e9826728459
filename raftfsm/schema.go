package raftfsm

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// Table names of the state store.
const (
	tableLoadBalancers = "load_balancers"
	tablePools         = "pools"
	tableCertificates  = "certificates"
	tableDNSRecords    = "dns_records"
	tableAddressPools  = "address_pools"
	tableNodes         = "nodes"
	tableJoinTokens    = "join_tokens"
	tableAPITokens     = "api_tokens"
	tableSecrets       = "secrets"
	tableFlowOwnership = "flow_ownership"
	tableIndex         = "index"
)

// Index names. Every table has "id"; the secondary indexes answer "who refers
// to X" without scanning, for invariant checks and delete guards.
const (
	indexID = "id"
	// indexPool on load balancers: every pool named by a listener or a rule.
	indexPool = "pool"
	// indexCertificate on load balancers: every certificate named by a listener.
	indexCertificate = "certificate"
	// indexAddress on load balancers: every listener's addressKeys.
	indexAddress = "address"
	// indexVIP on load balancers: the VIP, canonical (vipKey).
	indexVIP = "vip"
	// indexAddressPool on load balancers: the address pool the VIP is taken from.
	indexAddressPool = "address_pool"
	// indexLoadBalancer on DNS records: every target load balancer.
	indexLoadBalancer = "load_balancer"
)

// singletonID is the id of the single row of the secrets, flow ownership
// and index tables.
const singletonID = "singleton"

// indexRow is the single row of the index table: the last applied log index.
type indexRow struct {
	Value uint64
}

// secretsRow wraps the ClusterSecrets singleton.
type secretsRow struct {
	Secrets *statev1.ClusterSecrets
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableLoadBalancers: {
			Name: tableLoadBalancers,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:          idIndex(func(lb *weftv1.LoadBalancer) string { return lb.GetMetadata().GetName() }),
				indexPool:        multiIndex(indexPool, loadBalancerPools),
				indexCertificate: multiIndex(indexCertificate, loadBalancerCertificates),
				indexAddress:     multiIndex(indexAddress, loadBalancerAddresses),
				indexVIP:         optionalIndex(indexVIP, func(lb *weftv1.LoadBalancer) string { return vipKey(lb.GetSpec().GetVip()) }),
				indexAddressPool: optionalIndex(indexAddressPool, func(lb *weftv1.LoadBalancer) string { return lb.GetSpec().GetAddressPool() }),
			},
		},
		tableAddressPools: {
			Name:    tableAddressPools,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(p *weftv1.AddressPool) string { return p.GetMetadata().GetName() })},
		},
		tablePools: {
			Name:    tablePools,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(p *weftv1.Pool) string { return p.GetMetadata().GetName() })},
		},
		tableCertificates: {
			Name:    tableCertificates,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(c *weftv1.Certificate) string { return c.GetMetadata().GetName() })},
		},
		tableDNSRecords: {
			Name: tableDNSRecords,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:           idIndex(func(r *weftv1.DNSRecord) string { return r.GetMetadata().GetName() }),
				indexLoadBalancer: multiIndex(indexLoadBalancer, dnsRecordLoadBalancers),
			},
		},
		tableNodes: {
			Name:    tableNodes,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(n *weftv1.Node) string { return n.GetMetadata().GetName() })},
		},
		tableJoinTokens: {
			Name:    tableJoinTokens,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(r *statev1.JoinTokenRecord) string { return r.GetToken().GetId() })},
		},
		tableAPITokens: {
			Name:    tableAPITokens,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(r *statev1.APITokenRecord) string { return r.GetToken().GetId() })},
		},
		tableSecrets: {
			Name:    tableSecrets,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(*secretsRow) string { return singletonID })},
		},
		tableFlowOwnership: {
			Name:    tableFlowOwnership,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(*statev1.FlowOwnership) string { return singletonID })},
		},
		tableIndex: {
			Name:    tableIndex,
			Indexes: map[string]*memdb.IndexSchema{indexID: idIndex(func(*indexRow) string { return singletonID })},
		},
	}}
}

func newMemDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant; an error is a programming mistake.
		panic(fmt.Sprintf("raftfsm: invalid state store schema: %v", err))
	}
	return db
}

// idIndex is the unique primary index of a table holding values of type T.
func idIndex[T any](key func(T) string) *memdb.IndexSchema {
	return &memdb.IndexSchema{
		Name:    indexID,
		Unique:  true,
		Indexer: singleString[T](key),
	}
}

// optionalIndex is a non-unique index with at most one key per object; an
// object whose key is empty is not in it.
func optionalIndex[T any](name string, key func(T) string) *memdb.IndexSchema {
	return &memdb.IndexSchema{
		Name:         name,
		AllowMissing: true,
		Indexer:      singleString[T](key),
	}
}

// multiIndex is a non-unique index with any number of keys per object.
func multiIndex[T any](name string, keys func(T) []string) *memdb.IndexSchema {
	return &memdb.IndexSchema{
		Name:         name,
		AllowMissing: true,
		Indexer:      multiString[T](keys),
	}
}

// singleString indexes a T by one string, NUL-terminated as memdb's own
// string indexes are so that "a" sorts before "ab".
type singleString[T any] func(T) string

func (f singleString[T]) FromObject(raw any) (bool, []byte, error) {
	obj, ok := raw.(T)
	if !ok {
		return false, nil, fmt.Errorf("index: got %T, want %T", raw, obj)
	}
	key := f(obj)
	if key == "" {
		return false, nil, nil
	}
	return true, stringKey(key), nil
}

func (f singleString[T]) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

// multiString indexes a T by several strings.
type multiString[T any] func(T) []string

func (f multiString[T]) FromObject(raw any) (bool, [][]byte, error) {
	obj, ok := raw.(T)
	if !ok {
		return false, nil, fmt.Errorf("index: got %T, want %T", raw, obj)
	}
	keys := f(obj)
	if len(keys) == 0 {
		return false, nil, nil
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = stringKey(k)
	}
	return true, out, nil
}

func (f multiString[T]) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

func stringKey(s string) []byte {
	return append([]byte(s), 0)
}

func stringArg(args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index: got %d arguments, want 1", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index: got argument of type %T, want string", args[0])
	}
	return stringKey(s), nil
}
