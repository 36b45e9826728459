package k8s

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// fakeWeft keeps load balancers and pools by name and gives each new load
// balancer that leaves its VIP empty the next address of 192.0.2.0/24.
type fakeWeft struct {
	weftv1connect.LoadBalancerServiceClient // methods the controller does not call panic
	lbs                                     map[string]*weftv1.LoadBalancer
	pools                                   map[string]*weftv1.Pool
	next                                    int
}

func newFakeWeft() *fakeWeft {
	return &fakeWeft{lbs: map[string]*weftv1.LoadBalancer{}, pools: map[string]*weftv1.Pool{}, next: 1}
}

func (f *fakeWeft) Apply(_ context.Context, req *connect.Request[weftv1.ApplyRequest]) (*connect.Response[weftv1.ApplyResponse], error) {
	res := &weftv1.ApplyResponse{}
	for _, r := range req.Msg.GetResources() {
		if p := r.GetPool(); p != nil {
			f.pools[p.GetMetadata().GetName()] = p
		}
		if lb := r.GetLoadBalancer(); lb != nil {
			if old := f.lbs[lb.GetMetadata().GetName()]; lb.Spec.Vip == "" && old != nil {
				lb.Spec.Vip = old.GetSpec().GetVip()
			} else if lb.Spec.Vip == "" {
				lb.Spec.Vip = fmt.Sprintf("192.0.2.%d", f.next)
				f.next++
			}
			f.lbs[lb.GetMetadata().GetName()] = lb
		}
		res.Results = append(res.Results, &weftv1.ApplyResult{Action: "updated"})
	}
	return connect.NewResponse(res), nil
}

func (f *fakeWeft) GetLoadBalancer(_ context.Context, req *connect.Request[weftv1.GetRequest]) (*connect.Response[weftv1.GetLoadBalancerResponse], error) {
	lb, ok := f.lbs[req.Msg.GetName()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("load balancer %q not found", req.Msg.GetName()))
	}
	return connect.NewResponse(&weftv1.GetLoadBalancerResponse{LoadBalancer: lb}), nil
}

func (f *fakeWeft) ListPools(context.Context, *connect.Request[weftv1.ListRequest]) (*connect.Response[weftv1.ListPoolsResponse], error) {
	res := &weftv1.ListPoolsResponse{}
	for _, p := range f.pools {
		res.Pools = append(res.Pools, p)
	}
	return connect.NewResponse(res), nil
}

func (f *fakeWeft) DeletePool(_ context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	delete(f.pools, req.Msg.GetName())
	return connect.NewResponse(&weftv1.DeleteResponse{}), nil
}

func (f *fakeWeft) DeleteLoadBalancer(_ context.Context, req *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error) {
	if _, ok := f.lbs[req.Msg.GetName()]; !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("load balancer %q not found", req.Msg.GetName()))
	}
	delete(f.lbs, req.Msg.GetName())
	return connect.NewResponse(&weftv1.DeleteResponse{}), nil
}

func (f *fakeWeft) poolNames() string {
	var names []string
	for n := range f.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// TestReconcile follows one Service through the Reconciler with a fake API
// server and a fake Weft: served, a port removed (its pool deleted), then
// changed to ClusterIP (everything released, the ingress cleared).
func TestReconcile(t *testing.T) {
	ctx := context.Background()
	svc := service(func(s *corev1.Service) { s.Spec.LoadBalancerClass = new(DefaultClass) })
	slice := new(endpointSlice("http", 8080, endpoint(nil, "", "10.1.0.1")))
	slice.ObjectMeta = metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}
	kube := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(svc, slice).WithStatusSubresource(svc).Build()
	weft := newFakeWeft()
	rec := events.NewFakeRecorder(20)
	r := &Reconciler{Kube: kube, Weft: weft, Events: rec, Class: DefaultClass,
		Options: Options{ClusterName: "k8s", DefaultAddressPool: "public"}}
	reconcileOnce := func() *corev1.Service {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		var got corev1.Service
		if err := kube.Get(ctx, client.ObjectKeyFromObject(svc), &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}

	got := reconcileOnce()
	if !controllerutil.ContainsFinalizer(got, Finalizer) {
		t.Errorf("finalizers %v, want %s", got.Finalizers, Finalizer)
	}
	if ing := got.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != "192.0.2.1" {
		t.Errorf("ingress %v, want 192.0.2.1", ing)
	}
	if names := weft.poolNames(); names != "k8s-shop-web-0,k8s-shop-web-1" {
		t.Errorf("pools %s, want one per port", names)
	}

	got.Spec.Ports = got.Spec.Ports[:1]
	if err := kube.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	reconcileOnce()
	if names := weft.poolNames(); names != "k8s-shop-web-0" {
		t.Errorf("after a port was removed: pools %s, want k8s-shop-web-0", names)
	}

	got = reconcileOnce()
	got.Spec.Type, got.Spec.LoadBalancerClass = corev1.ServiceTypeClusterIP, nil
	if err := kube.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = reconcileOnce()
	if controllerutil.ContainsFinalizer(got, Finalizer) || len(got.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("after the type changed: finalizers %v, ingress %v, want neither", got.Finalizers, got.Status.LoadBalancer.Ingress)
	}
	if len(weft.lbs) != 0 || len(weft.pools) != 0 {
		t.Errorf("after the type changed: Weft holds %d load balancers and pools %q, want none", len(weft.lbs), weft.poolNames())
	}
	var reasons []string
	for len(rec.Events) > 0 {
		reasons = append(reasons, strings.Fields(<-rec.Events)[1])
	}
	for _, want := range []string{ReasonSynced, ReasonAllocated, ReasonReleased} {
		if !slices.Contains(reasons, want) {
			t.Errorf("events %v, want one %s", reasons, want)
		}
	}
}
