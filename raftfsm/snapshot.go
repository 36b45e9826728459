package raftfsm

// Snapshot format: uvarint format version (1), uvarint applied index, then a
// sequence of statev1.SnapshotRecord, each preceded by its length as a
// uvarint. The index is in the header because SnapshotRecord has no field
// for it and raft does not tell FSM.Restore the snapshot's index.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

const (
	snapshotFormat = 1
	// maxSnapshotRecord bounds one record, so that a corrupt length cannot
	// make Restore allocate without limit.
	maxSnapshotRecord = 256 << 20
)

// Snapshot captures the current state; Persist writes it out while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.State()}, nil
}

type fsmSnapshot struct {
	state *State
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.state); err != nil {
		return errors.Join(fmt.Errorf("persist snapshot: %w", err), sink.Cancel())
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return nil
}

func (s *fsmSnapshot) Release() {}

// writeSnapshot writes every record of s to w.
func writeSnapshot(w io.Writer, s *State) error {
	bw := bufio.NewWriter(w)
	buf := binary.AppendUvarint(nil, snapshotFormat)
	buf = binary.AppendUvarint(buf, s.Index())
	if _, err := bw.Write(buf); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	for _, rec := range snapshotRecords(s) {
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode record: %w", err)
		}
		buf = binary.AppendUvarint(buf[:0], uint64(len(body)))
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
		if _, err := bw.Write(body); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// snapshotRecords returns every record of s, in snapshot order.
func snapshotRecords(s *State) []*statev1.SnapshotRecord {
	var records []*statev1.SnapshotRecord
	if sec := s.Secrets(); sec != nil {
		records = append(records, &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Secrets{Secrets: sec}})
	}
	for _, r := range s.Resources() {
		records = append(records, &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Resource{Resource: r}})
	}
	for _, n := range s.Nodes() {
		records = append(records, &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Node{Node: n}})
	}
	for _, t := range s.JoinTokens() {
		records = append(records, &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_JoinToken{JoinToken: t}})
	}
	for _, t := range s.APITokens() {
		records = append(records, &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_ApiToken{ApiToken: t}})
	}
	if o := s.FlowOwnership(); o != nil {
		records = append(records, &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_FlowOwnership{FlowOwnership: o}})
	}
	return records
}

// Restore replaces the whole state with the snapshot read from rc. The new
// store is built aside and swapped in at once, so readers see either the
// old state or the new one; the event ring is cleared and Events reports a
// reset to every watcher that started before the snapshot's index.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, index, err := readSnapshot(bufio.NewReader(rc))
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.swap(db, index)
	return nil
}

func readSnapshot(r *bufio.Reader) (*memdb.MemDB, uint64, error) {
	format, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	if format != snapshotFormat {
		return nil, 0, fmt.Errorf("snapshot format %d is not supported (want %d)", format, snapshotFormat)
	}
	index, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	db := newMemDB()
	txn := db.Txn(true)
	defer txn.Abort()
	for n := 1; ; n++ {
		size, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("record %d: read length: %w", n, err)
		}
		if size > maxSnapshotRecord {
			return nil, 0, fmt.Errorf("record %d: length %d is over the limit of %d", n, size, maxSnapshotRecord)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, 0, fmt.Errorf("record %d: read: %w", n, err)
		}
		rec := &statev1.SnapshotRecord{}
		if err := proto.Unmarshal(body, rec); err != nil {
			return nil, 0, fmt.Errorf("record %d: decode: %w", n, err)
		}
		if err := restoreRecord(txn, rec); err != nil {
			return nil, 0, fmt.Errorf("record %d: %w", n, err)
		}
	}
	if err := txn.Insert(tableIndex, &indexRow{Value: index}); err != nil {
		return nil, 0, fmt.Errorf("record applied index: %w", err)
	}
	txn.Commit()
	return db, index, nil
}

// restoreRecord inserts one snapshot record. A record of a type this version
// does not know is an error: dropping it would make this replica diverge.
func restoreRecord(txn *memdb.Txn, rec *statev1.SnapshotRecord) error {
	var table string
	var row any
	switch r := rec.GetRecord().(type) {
	case *statev1.SnapshotRecord_Secrets:
		table, row = tableSecrets, &secretsRow{Secrets: r.Secrets}
	case *statev1.SnapshotRecord_Resource:
		k := kindOfResource(r.Resource)
		if k == nil {
			return errors.New("resource of unknown kind")
		}
		table, row = k.table, k.unwrap(r.Resource)
	case *statev1.SnapshotRecord_Node:
		table, row = tableNodes, r.Node
	case *statev1.SnapshotRecord_JoinToken:
		table, row = tableJoinTokens, r.JoinToken
	case *statev1.SnapshotRecord_ApiToken:
		table, row = tableAPITokens, r.ApiToken
	case *statev1.SnapshotRecord_FlowOwnership:
		table, row = tableFlowOwnership, r.FlowOwnership
	default:
		return errors.New("record of unknown type")
	}
	if err := txn.Insert(table, row); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}
