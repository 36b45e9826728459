package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
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

// TestK8s_ServiceLoadBalancer runs a real etcd and kube-apiserver, a
// one-node Weft cluster and two controller replicas: a Service of type
// LoadBalancer gets a VIP from the address pool, its Weft load balancer and
// pool follow its EndpointSlices (within 2 s), the controller outlives an
// API-server restart and its leader's death, and deleting the Service
// deletes everything.
func TestK8s_ServiceLoadBalancer(t *testing.T) {
	if _, _, err := testenv.Binaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skipf("no kube-apiserver to test against: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cp, err := testenv.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	rc, err := cp.RestConfig()
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(rc)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, cp.ControllerToken); err != nil {
		t.Fatal(err)
	}
	// The controller runs with the RBAC rules of its deployment manifest.
	applyRBAC(ctx, t, kube, "../deploy/k8s/controller.yaml")

	c := newCluster(t, 19)
	n1 := c.newAgent("node1", "a")
	c.initCluster(n1)
	weft := c.client(n1)
	const poolCIDR = "192.0.2.64/28"
	if _, err := c.weft(n1, "kind: AddressPool\nmetadata: {name: k8s}\nspec: {cidrs: ["+poolCIDR+"], primaryZone: a}\n", "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	var replicas []*controllerProc
	for i := range 2 {
		p := &controllerProc{log: &syncBuffer{}, exited: make(chan struct{})}
		p.cmd = exec.Command(weftBin, "k8s-controller", "--kubeconfig", kubeconfig,
			"--addr", n1.apiAddr(), "--ca-file", c.caFile, "--address-pool", "k8s", "--lease-namespace", "weft-system",
			"--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms", "--log-format", "json")
		p.cmd.Env = append(os.Environ(), "WEFT_TOKEN="+c.adminToken)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.exited) }()
		replicas = append(replicas, p)
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				t.Logf("--- log of controller replica %d ---\n%s", i, tail(p.log.String(), 40))
			}
		})
	}

	// The API server refuses loopback endpoint addresses, so the
	// endpoints are documentation addresses, and the node runs no dataplane:
	// nothing is sent to them (TestLab_K8s sends traffic).
	servers := []string{"198.51.100.10", "198.51.100.11", "198.51.100.12"}
	const port = 8080

	class := k8s.DefaultClass
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Ports: []corev1.ServicePort{{Name: "http", Port: 9000, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(port)), Protocol: new(corev1.ProtocolTCP)}},
	}
	setEndpoints := func(ready ...bool) {
		t.Helper()
		slice.Endpoints = nil
		for i, r := range ready {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{servers[i]},
				Conditions: discoveryv1.EndpointConditions{Ready: new(r)}})
		}
		var err error
		if slice.ResourceVersion == "" {
			slice, err = kube.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
		} else {
			slice, err = kube.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	setEndpoints(true, true)

	lbName, poolName := k8s.ResourceName("k8s", "default", "web"), k8s.ResourceName("k8s", "default", "web")+"-0"
	var vip string
	waitFor(t, 30*time.Second, "VIP in status.loadBalancer.ingress, Weft load balancer and pool", func() error {
		s, err := kube.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) != 1 {
			return fmt.Errorf("ingress %v", s.Status.LoadBalancer.Ingress)
		}
		vip = s.Status.LoadBalancer.Ingress[0].IP
		if a, err := netip.ParseAddr(vip); err != nil || !netip.MustParsePrefix(poolCIDR).Contains(a) {
			return fmt.Errorf("ingress IP %q is not in the pool %s", vip, poolCIDR)
		}
		if !strings.Contains(strings.Join(s.Finalizers, ","), k8s.Finalizer) {
			return fmt.Errorf("finalizers %v, want %s", s.Finalizers, k8s.Finalizer)
		}
		lb, err := weft.LB.GetLoadBalancer(ctx, connect.NewRequest(&weftv1.GetRequest{Name: lbName}))
		if err != nil {
			return err
		}
		if got := lb.Msg.GetLoadBalancer().GetSpec(); got.GetVip() != vip || got.GetListeners()[0].GetPool() != poolName || got.GetPrimaryZone() != "a" {
			return fmt.Errorf("Weft load balancer %v, want VIP %s, pool %s and the address pool's zone a", got, vip, poolName)
		}
		return poolMembers(ctx, weft.LB, poolName, servers[0], servers[1])
	})
	t.Logf("VIP %s", vip)
	waitFor(t, 10*time.Second, "event "+k8s.ReasonAllocated, func() error {
		evs, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == k8s.ReasonAllocated && strings.Contains(e.Message, vip) {
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s naming %s", len(evs.Items), k8s.ReasonAllocated, vip)
	})

	// Scaling: a third endpoint, then one not ready.
	scaled := func(what string, limit time.Duration, want ...string) {
		t.Helper()
		start := time.Now()
		waitFor(t, limit, what, func() error { return poolMembers(ctx, weft.LB, poolName, want...) })
		t.Logf("%s: the pool followed in %v", what, time.Since(start).Round(time.Millisecond))
	}
	setEndpoints(true, true, true)
	scaled("scaled to 3", 2*time.Second, servers...)
	setEndpoints(true, false, true)
	scaled("one not ready", 2*time.Second, servers[0], servers[2])

	// The API server restarts: the watches re-list, the leader may lose
	// and win the Lease again; changes are served again.
	cp.StopAPIServer()
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	setEndpoints(true, true, false)
	scaled("after an API-server restart", 20*time.Second, servers[0], servers[1])

	// One replica dies (the leader, or not): the other serves.
	replicas[0].kill()
	setEndpoints(false, true, true)
	scaled("after a replica died", 20*time.Second, servers[1], servers[2])

	// Deleting the Service deletes the Weft objects, then the finalizer.
	if err := kube.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "Service and Weft objects deleted", func() error {
		if _, err := kube.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service still there (%v)", err)
		}
		for _, get := range []func() error{
			func() error {
				_, err := weft.LB.GetLoadBalancer(ctx, connect.NewRequest(&weftv1.GetRequest{Name: lbName}))
				return err
			},
			func() error {
				_, err := weft.LB.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: poolName}))
				return err
			},
		} {
			if err := get(); connect.CodeOf(err) != connect.CodeNotFound {
				return fmt.Errorf("a Weft object remains (%v)", err)
			}
		}
		return nil
	})
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
