package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/weftlb/weft/pki"
)

// The data directory of a node:
//
//	identity.json   name, region, zone and addresses (written once)
//	tls/ca.crt      the cluster CA certificate (clients use it: WEFT_CA_FILE)
//	tls/node.crt    this node's certificate, signed by the cluster CA
//	tls/node.key    its key (0600)
//	admin-token     the first admin API token (0600; init only)
//	raft/           raft.db and snapshots/
const (
	identityFile   = "identity.json"
	caCertFile     = "tls/ca.crt"
	nodeCertFile   = "tls/node.crt"
	nodeKeyFile    = "tls/node.key"
	AdminTokenFile = "admin-token"
	raftDir        = "raft"
)

// identity is what a node keeps about itself across restarts.
type identity struct {
	Name          string `json:"name"`
	Region        string `json:"region"`
	Zone          string `json:"zone"`
	APIAdvertise  string `json:"apiAdvertise"`
	RaftAdvertise string `json:"raftAdvertise"`
	// GossipAdvertise is empty in data dirs from before gossip; such a node
	// takes its --gossip-addr.
	GossipAdvertise string `json:"gossipAdvertise,omitempty"`
}

// CAFile is the path of the cluster CA certificate in a data dir.
func CAFile(dataDir string) string { return filepath.Join(dataDir, caCertFile) }

type dataDir string

func (d dataDir) path(name string) string { return filepath.Join(string(d), name) }

// exists reports whether the directory already holds a node.
func (d dataDir) exists() (bool, error) {
	_, err := os.Stat(d.path(identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("data dir: %w", err)
	}
	return true, nil
}

func (d dataDir) readIdentity() (identity, error) {
	var id identity
	b, err := os.ReadFile(d.path(identityFile))
	if err != nil {
		return id, fmt.Errorf("read identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("parse %s: %w", d.path(identityFile), err)
	}
	return id, nil
}

// writeNode stores the node's certificates, then its identity: the
// identity file is the marker that the directory holds a complete node.
func (d dataDir) writeNode(id identity, caPEM, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(d.path("tls"), 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{caCertFile, caPEM}, {nodeCertFile, certPEM}, {nodeKeyFile, keyPEM}, {identityFile, b}} {
		if err := pki.WriteFile(d.path(f.name), f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// tlsFiles reads the CA, node certificate and key.
func (d dataDir) tlsFiles() (caPEM, certPEM, keyPEM []byte, err error) {
	if caPEM, err = os.ReadFile(d.path(caCertFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("read ca: %w", err)
	}
	if certPEM, err = os.ReadFile(d.path(nodeCertFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("read node certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(d.path(nodeKeyFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("read node key: %w", err)
	}
	return caPEM, certPEM, keyPEM, nil
}
