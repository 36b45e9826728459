// Package testenv runs a real etcd and kube-apiserver on loopback for the
// controller's tests, built from the Go module proxy by build.sh and cached
// by version (see README.md). There is no controller-manager: tests write
// the EndpointSlices themselves.
package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// buildScript is build.sh beside this file.
func buildScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "build.sh")
}

// Binaries builds etcd and kube-apiserver unless the cache has them, and
// returns their paths. The build takes about 10 minutes the first time on
// a machine; `make k8s-bins` starts it early.
func Binaries() (etcd, apiserver string, err error) {
	cmd := exec.Command("bash", buildScript())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("build etcd and kube-apiserver (%s): %w", buildScript(), err)
	}
	out, err := exec.Command("bash", buildScript(), "-p").Output()
	if err != nil {
		return "", "", fmt.Errorf("cache directory: %w", err)
	}
	cache := strings.TrimSpace(string(out))
	etcd, apiserver = filepath.Join(cache, "etcd-v3.7.3", "etcd"), filepath.Join(cache, "kube-apiserver-v1.37.2", "kube-apiserver")
	for _, p := range []string{etcd, apiserver} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("after the build: %w", err)
		}
	}
	return etcd, apiserver, nil
}

// ControllerUser is the user ControllerToken authenticates as: the service
// account of deploy/k8s/controller.yaml, so that its RBAC rules are what a
// test's controller runs with.
const ControllerUser = "system:serviceaccount:weft-system:weft-k8s-controller"

// ControlPlane is one etcd and one kube-apiserver. Token authenticates as
// an administrator (group system:masters), ControllerToken as ControllerUser.
type ControlPlane struct {
	Token, ControllerToken string
	// Host is the API server's https URL.
	Host string

	dir             string
	opts            Options
	apiserverBin    string
	apiserverArgs   []string
	etcd, apiserver *proc
}

// Options place the control plane in a network namespace: Wrap runs each
// process under a command (["ip", "netns", "exec", NS]) and Dial opens the
// test's connections there. The zero Options is this namespace's loopback.
type Options struct {
	Wrap []string
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// proc is a running process and its log.
type proc struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startProc runs bin with args (under wrap), appending its output to logPath.
func startProc(logPath string, wrap []string, bin string, args ...string) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	argv := append(append(slices.Clip(wrap), bin), args...)
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), log: log, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop sends SIGTERM and waits for the exit, killing after 10 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.log.Close()
}

// Start runs etcd and kube-apiserver with their data, certificates and
// logs under dir, and waits until the API server is ready.
func Start(ctx context.Context, dir string, opts Options) (*ControlPlane, error) {
	etcdBin, apiBin, err := Binaries()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Token: "weft-test-admin", ControllerToken: "weft-test-controller", dir: dir, opts: opts, apiserverBin: apiBin,
		Host: "https://127.0.0.1:" + strconv.Itoa(ports[2])}
	tokens := cp.Token + ",admin,admin,system:masters\n" + cp.ControllerToken + "," + ControllerUser + ",controller\n"
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	saKey, err := writeKey(filepath.Join(dir, "sa.key"))
	if err != nil {
		return nil, err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cp.etcd, err = startProc(filepath.Join(dir, "etcd.log"), opts.Wrap, etcdBin, "--name", "test", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "test="+peer,
		"--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	cp.apiserverArgs = []string{
		"--etcd-servers", client,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[2]),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/24",
		// No controller-manager runs: nothing would keep the kubernetes
		// Service's endpoints, nor create service accounts.
		"--endpoint-reconciler-type", "none",
		"--disable-admission-plugins", "ServiceAccount",
		"--service-account-issuer", cp.Host,
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

// StartAPIServer starts the API server (again, after StopAPIServer: its
// certificates are kept in the cert dir) and waits until it is ready.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	p, err := startProc(filepath.Join(cp.dir, "kube-apiserver.log"), cp.opts.Wrap, cp.apiserverBin, cp.apiserverArgs...)
	if err != nil {
		return err
	}
	cp.apiserver = p
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: cp.opts.Dial,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+cp.Token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("kube-apiserver exited (%v); see %s", p.err, p.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready within 60s: %v; see %s", err, p.log.Name())
		}
	}
}

// StopAPIServer stops the API server, leaving etcd running.
func (cp *ControlPlane) StopAPIServer() {
	cp.apiserver.stop()
	cp.apiserver = nil
}

// Stop stops both processes.
func (cp *ControlPlane) Stop() {
	cp.StopAPIServer()
	cp.etcd.stop()
	cp.etcd = nil
}

// RestConfig is a client configuration with the administrator token,
// trusting the API server's own (self-signed) certificate.
func (cp *ControlPlane) RestConfig() (*rest.Config, error) {
	ca, err := os.ReadFile(filepath.Join(cp.dir, "certs", "apiserver.crt"))
	if err != nil {
		return nil, fmt.Errorf("read the API server's certificate: %w", err)
	}
	return &rest.Config{Host: cp.Host, BearerToken: cp.Token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, Dial: cp.opts.Dial}, nil
}

// WriteKubeconfig writes to path a kubeconfig like RestConfig's with token.
func (cp *ControlPlane) WriteKubeconfig(path, token string) error {
	rc, err := cp.RestConfig()
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user"}
	cfg.CurrentContext = "test"
	return clientcmd.WriteToFile(*cfg, path)
}

// freePorts returns n loopback ports free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeKey writes a new ECDSA key for service-account tokens.
func writeKey(path string) (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	return path, nil
}
