package k8s

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// The Service fields and annotations the controller reads. DefaultClass is
// what spec.loadBalancerClass must be (the --class flag changes it).
const (
	DefaultClass = "weft.dev/lb"
	// AnnotationAddressPool names the Weft AddressPool the VIP is taken
	// from (default: --address-pool).
	AnnotationAddressPool = "weft.dev/address-pool"
	// AnnotationVIP asks for one address of the pool; spec.loadBalancerIP
	// is read when it is not set.
	AnnotationVIP = "weft.dev/vip"
	// AnnotationZones is "primary[,backup...]"; unset, the pool's zones.
	AnnotationZones = "weft.dev/zones"
	// AnnotationRegion is the load balancer's region; unset, the pool's.
	AnnotationRegion = "weft.dev/region"
	// AnnotationMode is fullnat (default), dsr or tunnel.
	AnnotationMode = "weft.dev/mode"
	// AnnotationScheduler is maglev (default) or source-hash; a Service with
	// sessionAffinity ClientIP defaults to source-hash.
	AnnotationScheduler = "weft.dev/scheduler"
	// Finalizer holds a Service until its Weft objects are deleted.
	Finalizer = "weft.dev/load-balancer"
	// LabelService and LabelCluster are set on the Weft objects the
	// controller writes: "namespace/name" of the Service, and --cluster-name.
	LabelService = "k8s.weft.dev/service"
	LabelCluster = "k8s.weft.dev/cluster"
)

// maxBaseName leaves room in a 63-character Weft name for a pool's
// "-<port index>" suffix.
const maxBaseName = 58

// ResourceName is the name of the Weft load balancer of a Service:
// "<cluster>-<namespace>-<name>", cut and suffixed with a hash of the whole
// when longer than maxBaseName, so that it is a DNS label and differs for
// each Service. Its pools are "<ResourceName>-<port index>".
func ResourceName(cluster, namespace, name string) string {
	full := cluster + "-" + namespace + "-" + name
	if len(full) <= maxBaseName {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	return strings.TrimRight(full[:maxBaseName-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

func poolName(base string, port int) string { return fmt.Sprintf("%s-%d", base, port) }

// Options are the controller's settings that shape what a Service becomes.
type Options struct {
	// ClusterName prefixes every Weft name, so that two Kubernetes clusters
	// can share one Weft cluster.
	ClusterName string
	// DefaultAddressPool is used for Services without AnnotationAddressPool.
	DefaultAddressPool string
}

// Translate returns the Weft load balancer and pools (one per Service
// port, in port order) that serve svc with the ready endpoints of slices.
// The VIP is left empty unless the Service asks for one: the state store
// gives it from the address pool. Errors name the Service field or
// annotation at fault.
func Translate(svc *corev1.Service, slices []discoveryv1.EndpointSlice, o Options) (*weftv1.LoadBalancer, []*weftv1.Pool, error) {
	base := ResourceName(o.ClusterName, svc.Namespace, svc.Name)
	labels := map[string]string{LabelService: svc.Namespace + "/" + svc.Name, LabelCluster: o.ClusterName}
	ann := svc.Annotations
	spec := &weftv1.LoadBalancerSpec{
		AddressPool: cmp.Or(ann[AnnotationAddressPool], o.DefaultAddressPool),
		Region:      ann[AnnotationRegion],
	}
	if spec.AddressPool == "" {
		return nil, nil, fmt.Errorf("annotation %s: not set, and the controller has no --address-pool", AnnotationAddressPool)
	}
	if vip := cmp.Or(ann[AnnotationVIP], svc.Spec.LoadBalancerIP); vip != "" {
		a, err := netip.ParseAddr(vip)
		if err != nil {
			field := "spec.loadBalancerIP"
			if ann[AnnotationVIP] != "" {
				field = "annotation " + AnnotationVIP
			}
			return nil, nil, fmt.Errorf("%s: %q is not an IP address", field, vip)
		}
		spec.Vip = a.String()
	}
	if z := ann[AnnotationZones]; z != "" {
		zones := strings.Split(z, ",")
		for i := range zones {
			zones[i] = strings.TrimSpace(zones[i])
		}
		spec.PrimaryZone, spec.BackupZones = zones[0], zones[1:]
	}
	mode := ann[AnnotationMode]
	if mode != "" && mode != "fullnat" && mode != "dsr" && mode != "tunnel" {
		return nil, nil, fmt.Errorf("annotation %s: %q is not fullnat, dsr or tunnel", AnnotationMode, mode)
	}
	scheduler := ann[AnnotationScheduler]
	if scheduler == "" && svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		scheduler = "source-hash"
	}
	if scheduler != "" && scheduler != "maglev" && scheduler != "source-hash" {
		return nil, nil, fmt.Errorf("annotation %s: %q is not maglev or source-hash", AnnotationScheduler, scheduler)
	}

	var pools []*weftv1.Pool
	for i, p := range svc.Spec.Ports {
		var protocol string
		switch p.Protocol {
		case corev1.ProtocolTCP, "":
			protocol = "tcp"
		case corev1.ProtocolUDP:
			protocol = "udp"
		default:
			return nil, nil, fmt.Errorf("spec.ports[%d].protocol: %s is not served by Weft (TCP or UDP)", i, p.Protocol)
		}
		pool := &weftv1.Pool{
			Metadata: &weftv1.Metadata{Name: poolName(base, i), Labels: labels},
			Spec:     &weftv1.PoolSpec{Members: members(p, slices)},
		}
		pools = append(pools, pool)
		spec.Listeners = append(spec.Listeners, &weftv1.Listener{
			Name: p.Name, Port: uint32(p.Port), Protocol: protocol, Mode: mode, Scheduler: scheduler, Pool: pool.Metadata.Name,
		})
	}
	return &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: base, Labels: labels}, Spec: spec}, pools, nil
}

// members are the ready endpoints' addresses with the target port of the
// slices' port named as p is, sorted and without repeats, so that the same
// endpoints always give the same pool (and an unchanged write).
func members(p corev1.ServicePort, eps []discoveryv1.EndpointSlice) []*weftv1.Member {
	seen := map[netip.AddrPort]bool{}
	var out []*weftv1.Member
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, sp := range s.Ports {
			if ptr(sp.Name) == p.Name && cmp.Or(ptr(sp.Protocol), corev1.ProtocolTCP) == cmp.Or(p.Protocol, corev1.ProtocolTCP) && sp.Port != nil {
				port = *sp.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			zone := ptr(ep.Zone)
			if len(validation.IsDNS1123Label(zone)) > 0 {
				zone = "" // Weft zones are DNS labels; others are left out
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || seen[netip.AddrPortFrom(addr, uint16(port))] {
					continue
				}
				seen[netip.AddrPortFrom(addr, uint16(port))] = true
				out = append(out, &weftv1.Member{Address: addr.String(), Port: uint32(port), Zone: zone})
			}
		}
	}
	slices.SortFunc(out, func(a, b *weftv1.Member) int {
		return netip.AddrPortFrom(netip.MustParseAddr(a.Address), uint16(a.Port)).Compare(
			netip.AddrPortFrom(netip.MustParseAddr(b.Address), uint16(b.Port)))
	})
	return out
}

func ptr[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
