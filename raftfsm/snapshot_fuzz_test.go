package raftfsm

import (
	"bufio"
	"bytes"
	"testing"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

// FuzzReadSnapshot feeds arbitrary bytes to the snapshot reader (snapshots
// arrive from peers): it must return an error or a store, never panic, and
// a store it returns must be readable.
func FuzzReadSnapshot(f *testing.F) {
	src := NewFSM(0)
	mustApply(f, src, 1, ApplyResourcesType, upsert(pool("web", 0, "10.0.0.1"), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web")), dns("www", 0, "lb1")))
	mustApply(f, src, 2, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "a")})
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, src.State()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		db, index, err := readSnapshot(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		s := &State{txn: db.Txn(false)}
		if s.Index() != index {
			t.Errorf("Index() = %d, want %d", s.Index(), index)
		}
		_ = dump(s)
	})
}
