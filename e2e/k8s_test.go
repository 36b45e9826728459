package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/k8s"
	"github.com/weftlb/weft/k8s/testenv"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// controllerProc is one `weft k8s-controller` replica.
type controllerProc struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

func (p *controllerProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// k8sRig is a real etcd and kube-apiserver, two controller replicas and
// a Service "web" with one EndpointSlice, in front of a Weft cluster.
type k8sRig struct {
	t        *testing.T
	ctx      context.Context
	cp       *testenv.ControlPlane
	kube     kubernetes.Interface
	weft     *api.Client
	replicas []*controllerProc
	// servers are the endpoints' addresses, all on port.
	servers       []string
	port          int32
	slice         *discoveryv1.EndpointSlice
	lbName, pool  string
	poolCIDR, vip string
}

// newK8sRig starts the control plane and the controller (under wrap, in
// the namespace dial reaches: where the cluster's clients run), gives Weft
// the address pool poolCIDR, and creates the Service with the servers
// ready[i] says as endpoints; it waits until the Service is served.
func newK8sRig(t *testing.T, ctx context.Context, c *cluster, a *agent, wrap []string, poolCIDR string, servers []string, port int32) *k8sRig {
	t.Helper()
	if _, _, err := testenv.Binaries(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cp, err := testenv.Start(ctx, dir, testenv.Options{Wrap: wrap, Dial: c.dial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	rc, err := cp.RestConfig()
	if err != nil {
		t.Fatal(err)
	}
	r := &k8sRig{t: t, ctx: ctx, cp: cp, kube: kubernetes.NewForConfigOrDie(rc), weft: c.client(a),
		servers: servers, port: port, poolCIDR: poolCIDR,
		lbName: k8s.ResourceName("k8s", "default", "web"), pool: k8s.ResourceName("k8s", "default", "web") + "-0"}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, cp.ControllerToken); err != nil {
		t.Fatal(err)
	}
	// The controller runs with the RBAC rules of its deployment manifest.
	applyRBAC(ctx, t, r.kube, "../deploy/k8s/controller.yaml")
	if _, err := c.weft(a, "kind: AddressPool\nmetadata: {name: k8s}\nspec: {cidrs: ["+poolCIDR+"], primaryZone: a}\n", "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p := &controllerProc{log: &syncBuffer{}, exited: make(chan struct{})}
		argv := append(slices.Clip(wrap), weftBin, "k8s-controller", "--kubeconfig", kubeconfig,
			"--addr", a.apiAddr(), "--ca-file", c.caFile, "--address-pool", "k8s", "--lease-namespace", "weft-system",
			"--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms", "--log-format", "json")
		p.cmd = exec.Command(argv[0], argv[1:]...)
		p.cmd.Env = append(os.Environ(), "WEFT_TOKEN="+c.adminToken)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.exited) }()
		r.replicas = append(r.replicas, p)
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				t.Logf("--- log of controller replica %d ---\n%s", i, tail(p.log.String(), 40))
			}
		})
	}

	class := k8s.DefaultClass
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := r.kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.slice = &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(port), Protocol: new(corev1.ProtocolTCP)}},
	}
	r.setEndpoints(true, true)
	r.waitServed(servers[0], servers[1])
	return r
}

// setEndpoints writes the slice: servers[i] with ready[i].
func (r *k8sRig) setEndpoints(ready ...bool) {
	r.t.Helper()
	r.slice.Endpoints = nil
	for i, ok := range ready {
		r.slice.Endpoints = append(r.slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{r.servers[i]},
			Conditions: discoveryv1.EndpointConditions{Ready: new(ok)}})
	}
	var err error
	if r.slice.ResourceVersion == "" {
		r.slice, err = r.kube.DiscoveryV1().EndpointSlices("default").Create(r.ctx, r.slice, metav1.CreateOptions{})
	} else {
		r.slice, err = r.kube.DiscoveryV1().EndpointSlices("default").Update(r.ctx, r.slice, metav1.UpdateOptions{})
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// waitServed waits until the Service has a VIP of the pool in its status
// and a finalizer, and Weft the load balancer (that VIP, the pool's zone)
// and the pool with the members.
func (r *k8sRig) waitServed(members ...string) {
	r.t.Helper()
	waitFor(r.t, 30*time.Second, "VIP in status.loadBalancer.ingress, Weft load balancer and pool", func() error {
		s, err := r.kube.CoreV1().Services("default").Get(r.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) != 1 {
			return fmt.Errorf("ingress %v", s.Status.LoadBalancer.Ingress)
		}
		r.vip = s.Status.LoadBalancer.Ingress[0].IP
		if a, err := netip.ParseAddr(r.vip); err != nil || !netip.MustParsePrefix(r.poolCIDR).Contains(a) {
			return fmt.Errorf("ingress IP %q is not in the pool %s", r.vip, r.poolCIDR)
		}
		if !slices.Contains(s.Finalizers, k8s.Finalizer) {
			return fmt.Errorf("finalizers %v, want %s", s.Finalizers, k8s.Finalizer)
		}
		lb, err := r.weft.LB.GetLoadBalancer(r.ctx, connect.NewRequest(&weftv1.GetRequest{Name: r.lbName}))
		if err != nil {
			return err
		}
		if got := lb.Msg.GetLoadBalancer().GetSpec(); got.GetVip() != r.vip || got.GetListeners()[0].GetPool() != r.pool || got.GetPrimaryZone() != "a" {
			return fmt.Errorf("Weft load balancer %v, want VIP %s, pool %s and the address pool's zone a", got, r.vip, r.pool)
		}
		return poolMembers(r.ctx, r.weft.LB, r.pool, members...)
	})
	r.t.Logf("VIP %s", r.vip)
}

// scaled waits until the Weft pool holds exactly the members.
func (r *k8sRig) scaled(what string, limit time.Duration, members ...string) {
	r.t.Helper()
	start := time.Now()
	waitFor(r.t, limit, what, func() error { return poolMembers(r.ctx, r.weft.LB, r.pool, members...) })
	r.t.Logf("%s: the pool followed in %v", what, time.Since(start).Round(time.Millisecond))
}

// deleteService deletes the Service and waits until it and its Weft
// objects are gone (the finalizer done).
func (r *k8sRig) deleteService() {
	r.t.Helper()
	if err := r.kube.CoreV1().Services("default").Delete(r.ctx, "web", metav1.DeleteOptions{}); err != nil {
		r.t.Fatal(err)
	}
	waitFor(r.t, 20*time.Second, "Service and Weft objects deleted", func() error {
		if _, err := r.kube.CoreV1().Services("default").Get(r.ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service still there (%v)", err)
		}
		if _, err := r.weft.LB.GetLoadBalancer(r.ctx, connect.NewRequest(&weftv1.GetRequest{Name: r.lbName})); connect.CodeOf(err) != connect.CodeNotFound {
			return fmt.Errorf("the Weft load balancer remains (%v)", err)
		}
		if _, err := r.weft.LB.GetPool(r.ctx, connect.NewRequest(&weftv1.GetRequest{Name: r.pool})); connect.CodeOf(err) != connect.CodeNotFound {
			return fmt.Errorf("the Weft pool remains (%v)", err)
		}
		return nil
	})
}

// TestK8s_ServiceLoadBalancer runs a real etcd and kube-apiserver, a
// one-node Weft cluster and two controller replicas: a Service of type
// LoadBalancer gets a VIP from the address pool, its Weft load balancer and
// pool follow its EndpointSlices (within 2 s), the controller outlives an
// API-server restart and its leader's death, and deleting the Service
// deletes everything.
func TestK8s_ServiceLoadBalancer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := newCluster(t, 19)
	n1 := c.newAgent("node1", "a")
	c.initCluster(n1)
	// The API server refuses loopback endpoint addresses, so the
	// endpoints are documentation addresses, and the node runs no dataplane:
	// nothing is sent to them (TestLab_K8s sends traffic).
	servers := []string{"198.51.100.10", "198.51.100.11", "198.51.100.12"}
	r := newK8sRig(t, ctx, c, n1, nil, "192.0.2.64/28", servers, 8080)
	waitFor(t, 10*time.Second, "event "+k8s.ReasonAllocated, func() error {
		evs, err := r.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == k8s.ReasonAllocated && strings.Contains(e.Message, r.vip) {
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s naming %s", len(evs.Items), k8s.ReasonAllocated, r.vip)
	})

	// Scaling: a third endpoint, then one not ready.
	r.setEndpoints(true, true, true)
	r.scaled("scaled to 3", 2*time.Second, servers...)
	r.setEndpoints(true, false, true)
	r.scaled("one not ready", 2*time.Second, servers[0], servers[2])

	// The API server restarts: the watches re-list, the leader may lose
	// and win the Lease again; changes are served again.
	r.cp.StopAPIServer()
	if err := r.cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	r.setEndpoints(true, true, false)
	r.scaled("after an API-server restart", 20*time.Second, servers[0], servers[1])

	// One replica dies (the leader, or not): the other serves.
	r.replicas[0].kill()
	r.setEndpoints(false, true, true)
	r.scaled("after a replica died", 20*time.Second, servers[1], servers[2])

	r.deleteService()
}

// poolMembers checks that the Weft pool's members are exactly the addresses.
func poolMembers(ctx context.Context, weft interface {
	GetPool(context.Context, *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetPoolResponse], error)
}, name string, want ...string) error {
	res, err := weft.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: name}))
	if err != nil {
		return err
	}
	var got []string
	for _, m := range res.Msg.GetPool().GetSpec().GetMembers() {
		got = append(got, m.GetAddress())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		return fmt.Errorf("pool %s members %v, want %v", name, got, want)
	}
	return nil
}

// applyRBAC creates the namespace, service account, roles and bindings of
// a manifest (not its Deployment: nothing runs pods here).
func applyRBAC(ctx context.Context, t *testing.T, kube kubernetes.Interface, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = kube.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = kube.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = kube.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = kube.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = kube.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = kube.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("%s: create %T: %v", path, obj, err)
		}
	}
}
