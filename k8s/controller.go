// Package k8s is Weft's Kubernetes controller: Services of type
// LoadBalancer with Weft's loadBalancerClass become Weft load balancers and
// pools (see README.md).
package k8s

import (
	"context"
	"fmt"
	"slices"

	"connectrpc.com/connect"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// Reasons of the Events the controller records on Services.
const (
	ReasonSynced     = "Synced"
	ReasonAllocated  = "IPAllocated"
	ReasonSyncFailed = "SyncFailed"
	ReasonReleased   = "Released"
	ReasonInvalid    = "InvalidService"
	actionReconcile  = "Reconcile"
	actionDelete     = "Delete"
)

// Reconciler keeps the Weft objects of each Service in step with it and its
// EndpointSlices.
type Reconciler struct {
	Kube   client.Client
	Weft   weftv1connect.LoadBalancerServiceClient
	Events events.EventRecorder
	// Class is the loadBalancerClass served; ClaimUnclassed also takes
	// Services that set none.
	Class          string
	ClaimUnclassed bool
	Options
}

// ours reports whether the controller serves svc.
func (r *Reconciler) ours(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return r.ClaimUnclassed
	}
	return *svc.Spec.LoadBalancerClass == r.Class
}

// SetupWithManager registers the reconciler: Services, and EndpointSlices
// mapped to the Service they belong to.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("weft-service").
		// Run starts a new manager after a lost leadership, in the same process.
		WithOptions(controller.Options{SkipNameValidation: new(true)}).
		For(&corev1.Service{}).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				name := o.GetLabels()[discoveryv1.LabelServiceName]
				if name == "" {
					return nil
				}
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
			})).
		Complete(r)
}

// Reconcile makes Weft match one Service.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var svc corev1.Service
	if err := r.Kube.Get(ctx, req.NamespacedName, &svc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !svc.DeletionTimestamp.IsZero() || !r.ours(&svc) {
		return reconcile.Result{}, r.release(ctx, &svc)
	}
	if !controllerutil.ContainsFinalizer(&svc, Finalizer) {
		patch := client.MergeFrom(svc.DeepCopy())
		controllerutil.AddFinalizer(&svc, Finalizer)
		if err := r.Kube.Patch(ctx, &svc, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}
	var eps discoveryv1.EndpointSliceList
	if err := r.Kube.List(ctx, &eps, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return reconcile.Result{}, fmt.Errorf("list endpoint slices: %w", err)
	}
	lb, pools, err := Translate(&svc, eps.Items, r.Options)
	if err != nil {
		// Nothing changes until the Service does, which reconciles again.
		r.Events.Eventf(&svc, nil, corev1.EventTypeWarning, ReasonInvalid, actionReconcile, "%v", err)
		return reconcile.Result{}, nil
	}
	vip, changed, err := r.write(ctx, lb, pools)
	if err != nil {
		r.Events.Eventf(&svc, nil, corev1.EventTypeWarning, ReasonSyncFailed, actionReconcile, "%v", err)
		return reconcile.Result{}, err
	}
	members := 0
	for _, p := range pools {
		members += len(p.GetSpec().GetMembers())
	}
	if changed {
		r.Events.Eventf(&svc, nil, corev1.EventTypeNormal, ReasonSynced, actionReconcile,
			"Weft load balancer %s at %s, %d pool members", lb.GetMetadata().GetName(), vip, members)
	}
	return reconcile.Result{}, r.setIngress(ctx, &svc, vip)
}

// write applies the pools and the load balancer in one batch, deletes the
// Service's pools that no listener names any more, and returns the VIP and
// whether anything changed.
func (r *Reconciler) write(ctx context.Context, lb *weftv1.LoadBalancer, pools []*weftv1.Pool) (string, bool, error) {
	batch := make([]*weftv1.Resource, 0, len(pools)+1)
	for _, p := range pools {
		batch = append(batch, &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: p}})
	}
	batch = append(batch, &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: lb}})
	res, err := r.Weft.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: batch}))
	if err != nil {
		return "", false, fmt.Errorf("apply to Weft: %w", err)
	}
	changed := slices.ContainsFunc(res.Msg.GetResults(), func(it *weftv1.ApplyResult) bool { return it.GetAction() != "unchanged" })
	got, err := r.Weft.GetLoadBalancer(ctx, connect.NewRequest(&weftv1.GetRequest{Name: lb.GetMetadata().GetName()}))
	if err != nil {
		return "", false, fmt.Errorf("read back load balancer %s: %w", lb.GetMetadata().GetName(), err)
	}
	keep := map[string]bool{}
	for _, p := range pools {
		keep[p.GetMetadata().GetName()] = true
	}
	deleted, err := r.deletePools(ctx, lb.GetMetadata().GetLabels(), keep)
	return got.Msg.GetLoadBalancer().GetSpec().GetVip(), changed || deleted, err
}

// deletePools deletes the pools labelled for the Service (labels) whose
// names keep does not hold, and reports whether it deleted any.
func (r *Reconciler) deletePools(ctx context.Context, labels map[string]string, keep map[string]bool) (bool, error) {
	list, err := r.Weft.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{}))
	if err != nil {
		return false, fmt.Errorf("list Weft pools: %w", err)
	}
	deleted := false
	for _, p := range list.Msg.GetPools() {
		l := p.GetMetadata().GetLabels()
		if l[LabelService] != labels[LabelService] || l[LabelCluster] != labels[LabelCluster] || keep[p.GetMetadata().GetName()] {
			continue
		}
		if err := r.deleteWeft(ctx, r.Weft.DeletePool, p.GetMetadata().GetName()); err != nil {
			return deleted, err
		}
		deleted = true
	}
	return deleted, nil
}

// deleteWeft deletes one Weft object; one already gone is not an error.
func (r *Reconciler) deleteWeft(ctx context.Context, del func(context.Context, *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error), name string) error {
	_, err := del(ctx, connect.NewRequest(&weftv1.DeleteRequest{Name: name}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return fmt.Errorf("delete Weft %s: %w", name, err)
	}
	return nil
}

// release deletes the Weft objects of a Service being deleted or no longer
// served, clears the address it was given, and lets it go (finalizer).
func (r *Reconciler) release(ctx context.Context, svc *corev1.Service) error {
	if !controllerutil.ContainsFinalizer(svc, Finalizer) {
		return nil
	}
	name := ResourceName(r.ClusterName, svc.Namespace, svc.Name)
	err := r.deleteWeft(ctx, r.Weft.DeleteLoadBalancer, name)
	if err == nil {
		_, err = r.deletePools(ctx, map[string]string{LabelService: svc.Namespace + "/" + svc.Name, LabelCluster: r.ClusterName}, nil)
	}
	if err != nil {
		r.Events.Eventf(svc, nil, corev1.EventTypeWarning, ReasonSyncFailed, actionDelete, "%v", err)
		return err
	}
	if svc.DeletionTimestamp.IsZero() {
		if err := r.setIngress(ctx, svc, ""); err != nil {
			return err
		}
	}
	patch := client.MergeFrom(svc.DeepCopy())
	controllerutil.RemoveFinalizer(svc, Finalizer)
	if err := r.Kube.Patch(ctx, svc, patch); err != nil {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	r.Events.Eventf(svc, nil, corev1.EventTypeNormal, ReasonReleased, actionDelete, "Weft load balancer %s deleted", name)
	return nil
}

// setIngress writes status.loadBalancer.ingress: the VIP, or nothing.
func (r *Reconciler) setIngress(ctx context.Context, svc *corev1.Service, vip string) error {
	var want []corev1.LoadBalancerIngress
	if vip != "" {
		want = []corev1.LoadBalancerIngress{{IP: vip}}
	}
	cur := svc.Status.LoadBalancer.Ingress
	if len(cur) == len(want) && (len(cur) == 0 || cur[0].IP == vip && len(cur[0].Hostname) == 0) {
		return nil
	}
	first := len(cur) == 0 && vip != ""
	patch := client.MergeFrom(svc.DeepCopy())
	svc.Status.LoadBalancer.Ingress = want
	if err := r.Kube.Status().Patch(ctx, svc, patch); err != nil {
		return fmt.Errorf("write status.loadBalancer.ingress: %w", err)
	}
	if first {
		r.Events.Eventf(svc, nil, corev1.EventTypeNormal, ReasonAllocated, actionReconcile, "VIP %s from Weft", vip)
	}
	return nil
}
