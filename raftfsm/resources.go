package raftfsm

import (
	"fmt"
	"maps"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// Kind names of the user resources, as used in DeleteResourceCommand.kind,
// ItemResult.Kind and State.Resource.
const (
	KindLoadBalancer = "LoadBalancer"
	KindPool         = "Pool"
	KindCertificate  = "Certificate"
	KindDNSRecord    = "DNSRecord"
	KindAddressPool  = "AddressPool"
)

// Actions reported per resource by ApplyResources.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
)

// ApplyResult is the response to an ApplyResourcesCommand.
type ApplyResult struct {
	// Index is the log index of the command: the version of every resource
	// it created or updated.
	Index uint64
	// Results has one entry per resource, in request order.
	Results []ItemResult
}

// ItemResult says what ApplyResources did with one resource.
type ItemResult struct {
	Kind    string
	Name    string
	Action  string
	Version uint64
}

// resourceKind describes one of the user resource kinds: where it is
// stored and which invariants guard it. Its functions use table names, not
// other kinds, so the kind variables do not depend on each other.
type resourceKind struct {
	name  string // KindPool
	noun  string // "pool", for messages
	table string
	// unwrap returns the kind's message inside r, or nil when r holds another kind.
	unwrap func(r *weftv1.Resource) proto.Message
	wrap   func(m proto.Message) *weftv1.Resource
	// prepare fills, before a resource is compared with the stored one and
	// written, what the state store decides for it (a load balancer's VIP
	// from its address pool). Nil when it decides nothing.
	prepare func(tx *writeTxn, m proto.Message) error
	// check verifies, after a batch is written, the invariants that a changed
	// resource of this kind could break. Nil when it cannot break any.
	check func(tx *writeTxn, m proto.Message) error
	// users returns a FailedPrecondition naming a resource that refers to
	// the named one, so that it cannot be deleted. Nil when nothing refers to the kind.
	users func(tx *writeTxn, name string) error
}

// resourceKinds lists the kinds in dependency order: each kind refers only to
// kinds before it, so listing (and applying) in this order never dangles.
var resourceKinds = []*resourceKind{addressPoolKind, certificateKind, poolKind, loadBalancerKind, dnsRecordKind}

func kindByName(name string) *resourceKind {
	for _, k := range resourceKinds {
		if k.name == name {
			return k
		}
	}
	return nil
}

func kindOfResource(r *weftv1.Resource) *resourceKind {
	for _, k := range resourceKinds {
		if k.unwrap(r) != nil {
			return k
		}
	}
	return nil
}

// KindOf returns the kind name of r ("LoadBalancer", "Pool", "Certificate",
// "DNSRecord", "AddressPool"), or "" when r holds none.
func KindOf(r *weftv1.Resource) string {
	if k := kindOfResource(r); k != nil {
		return k.name
	}
	return ""
}

// metadataOf returns the metadata field of a resource message (nil when unset).
func metadataOf(m proto.Message) *weftv1.Metadata {
	md, _ := m.(interface{ GetMetadata() *weftv1.Metadata })
	if md == nil {
		return nil
	}
	return md.GetMetadata()
}

// mutableMetadata returns the metadata of m, setting an empty one if unset.
// Every resource message has a "metadata" field; reflection saves one setter per kind.
func mutableMetadata(m proto.Message) *weftv1.Metadata {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("metadata")
	return r.Mutable(fd).Message().Interface().(*weftv1.Metadata)
}

// specOf returns the spec field of a resource message, for comparison.
func specOf(m proto.Message) protoreflect.ProtoMessage {
	r := m.ProtoReflect()
	return r.Get(r.Descriptor().Fields().ByName("spec")).Message().Interface()
}

// tombstone is what a delete event carries: an empty resource of m's kind
// with only its name and the deleting index set.
func tombstone(k *resourceKind, m proto.Message, index uint64) *weftv1.Resource {
	empty := m.ProtoReflect().Type().New().Interface()
	md := mutableMetadata(empty)
	md.Name = metadataOf(m).GetName()
	md.Version = index
	return k.wrap(empty)
}

// applyResources writes a batch of resources all or nothing: any error leaves
// the store as it was (the FSM aborts the transaction).
func (tx *writeTxn) applyResources(cmd *statev1.ApplyResourcesCommand) (*ApplyResult, error) {
	result := &ApplyResult{Index: tx.index, Results: make([]ItemResult, 0, len(cmd.GetResources()))}
	type written struct {
		kind *resourceKind
		msg  proto.Message
	}
	var changed []written
	seen := make(map[string]bool, len(cmd.GetResources()))
	for i, r := range cmd.GetResources() {
		k := kindOfResource(r)
		if k == nil {
			return nil, stateErrorf(Invalid, "resource %d of the batch: no kind is set", i+1)
		}
		msg := k.unwrap(r)
		name := metadataOf(msg).GetName()
		if name == "" {
			return nil, stateErrorf(Invalid, "resource %d of the batch: %s: metadata.name is not set", i+1, k.noun)
		}
		// A second copy would be checked against the first one's write,
		// which no caller means: reject the batch instead.
		key := k.name + "/" + name
		if seen[key] {
			return nil, stateErrorf(Invalid, "%s %q appears more than once in the batch", k.noun, name)
		}
		seen[key] = true
		if k.prepare != nil {
			if err := k.prepare(tx, msg); err != nil {
				return nil, err
			}
		}
		item, err := tx.putResource(k, cmd.GetMode(), msg)
		if err != nil {
			return nil, err
		}
		result.Results = append(result.Results, item)
		if item.Action != ActionUnchanged {
			changed = append(changed, written{k, msg})
		}
	}
	// Invariants are checked after the whole batch so that a load balancer
	// and the pool it names can arrive together, in any order.
	for _, w := range changed {
		if w.kind.check == nil {
			continue
		}
		if err := w.kind.check(tx, w.msg); err != nil {
			return nil, err
		}
	}
	return result, nil
}

// EvaluateResources reports what an ApplyResourcesCommand would do if it
// were the next entry applied, and changes nothing: the same results or the
// same error, and the state they were worked out on. The result's Index is
// that state's index, and created or updated resources get version 0 (the
// entry's index is not known). The API answers dry runs with it, and
// batches that would change nothing without writing a Raft entry.
func (f *FSM) EvaluateResources(cmd *statev1.ApplyResourcesCommand) (*ApplyResult, *State, error) {
	// A write transaction on a snapshot of the store neither waits for nor
	// blocks Apply's; the snapshot shares the stored rows, which the
	// transaction only reads.
	db := f.db.Load().Snapshot()
	st := &State{txn: db.Txn(false)}
	tx := &writeTxn{txn: db.Txn(true)}
	defer tx.txn.Abort()
	// applyResources sets versions in the messages it is given.
	res, err := tx.applyResources(proto.Clone(cmd).(*statev1.ApplyResourcesCommand))
	if err != nil {
		return nil, st, err
	}
	res.Index = st.Index()
	return res, st, nil
}

// putResource creates or updates one resource according to mode and the
// expected version in its metadata.
func (tx *writeTxn) putResource(k *resourceKind, mode statev1.WriteMode, msg proto.Message) (ItemResult, error) {
	md := mutableMetadata(msg)
	name, want := md.GetName(), md.GetVersion()
	item := ItemResult{Kind: k.name, Name: name}
	raw, err := tx.txn.First(k.table, indexID, name)
	if err != nil {
		return item, fmt.Errorf("look up %s %q: %w", k.noun, name, err)
	}
	if raw == nil {
		switch {
		case want != 0:
			return item, stateErrorf(NotFound, "%s %q: version %d was expected but the %s does not exist", k.noun, name, want, k.noun)
		case mode == statev1.WriteMode_WRITE_MODE_UPDATE:
			return item, stateErrorf(NotFound, "%s %q not found", k.noun, name)
		}
		md.Version, md.CreateIndex = tx.index, tx.index
		if err := tx.putObject(k, msg); err != nil {
			return item, err
		}
		item.Action, item.Version = ActionCreated, tx.index
		return item, nil
	}

	old := raw.(proto.Message)
	oldMD := metadataOf(old)
	switch {
	case want != 0 && want != oldMD.GetVersion():
		return item, stateErrorf(Conflict, "%s %q: version %d does not match current version %d", k.noun, name, want, oldMD.GetVersion())
	case mode == statev1.WriteMode_WRITE_MODE_CREATE:
		return item, stateErrorf(AlreadyExists, "%s %q already exists", k.noun, name)
	}
	if proto.Equal(specOf(old), specOf(msg)) && maps.Equal(oldMD.GetLabels(), md.GetLabels()) {
		item.Action, item.Version = ActionUnchanged, oldMD.GetVersion()
		return item, nil
	}
	md.Version, md.CreateIndex = tx.index, oldMD.GetCreateIndex()
	if err := tx.putObject(k, msg); err != nil {
		return item, err
	}
	item.Action, item.Version = ActionUpdated, tx.index
	return item, nil
}

func (tx *writeTxn) putObject(k *resourceKind, msg proto.Message) error {
	if err := tx.txn.Insert(k.table, msg); err != nil {
		return fmt.Errorf("insert %s %q: %w", k.noun, metadataOf(msg).GetName(), err)
	}
	tx.events = append(tx.events, Event{Index: tx.index, Type: EventPut, Resource: k.wrap(msg)})
	return nil
}

// deleteResource deletes one resource unless another one refers to it.
func (tx *writeTxn) deleteResource(cmd *statev1.DeleteResourceCommand) (uint64, error) {
	k := kindByName(cmd.GetKind())
	if k == nil {
		return 0, stateErrorf(Invalid, "unknown resource kind %q", cmd.GetKind())
	}
	name := cmd.GetName()
	raw, err := tx.txn.First(k.table, indexID, name)
	if err != nil {
		return 0, fmt.Errorf("look up %s %q: %w", k.noun, name, err)
	}
	if raw == nil {
		return 0, stateErrorf(NotFound, "%s %q not found", k.noun, name)
	}
	old := raw.(proto.Message)
	if v := metadataOf(old).GetVersion(); cmd.GetVersion() != 0 && cmd.GetVersion() != v {
		return 0, stateErrorf(Conflict, "%s %q: version %d does not match current version %d", k.noun, name, cmd.GetVersion(), v)
	}
	if k.users != nil {
		if err := k.users(tx, name); err != nil {
			return 0, err
		}
	}
	if err := tx.txn.Delete(k.table, old); err != nil {
		return 0, fmt.Errorf("delete %s %q: %w", k.noun, name, err)
	}
	tx.events = append(tx.events, Event{Index: tx.index, Type: EventDelete, Resource: tombstone(k, old, tx.index)})
	return tx.index, nil
}

// exists reports whether table holds a row with the given id.
func (tx *writeTxn) exists(table, id string) (bool, error) {
	raw, err := tx.txn.First(table, indexID, id)
	if err != nil {
		return false, fmt.Errorf("look up %s %q: %w", table, id, err)
	}
	return raw != nil, nil
}
