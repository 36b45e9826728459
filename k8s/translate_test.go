package k8s

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/validate"
)

func service(edit func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
	if edit != nil {
		edit(s)
	}
	return s
}

func endpointSlice(port string, number int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		Ports: []discoveryv1.EndpointPort{{Name: new(port), Port: new(number), Protocol: new(corev1.ProtocolTCP)}}}
}

func endpoint(ready *bool, zone string, addrs ...string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	if zone != "" {
		e.Zone = new(zone)
	}
	return e
}

func TestTranslate(t *testing.T) {
	opts := Options{ClusterName: "prod", DefaultAddressPool: "public"}
	lb, pools, err := Translate(service(func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationZones: "a, b", AnnotationMode: "dsr", AnnotationVIP: "192.0.2.7"}
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}), []discoveryv1.EndpointSlice{
		endpointSlice("http", 8080,
			endpoint(nil, "eu-1a", "10.1.0.2"),
			endpoint(new(false), "", "10.1.0.3"),
			endpoint(new(true), "Bad_Zone", "10.1.0.1", "10.1.0.2")),
		// Another slice of the same port, repeating one endpoint.
		endpointSlice("http", 8080, endpoint(nil, "", "10.1.0.1")),
		{AddressType: discoveryv1.AddressTypeFQDN, Endpoints: []discoveryv1.Endpoint{endpoint(nil, "", "db.example.com")}},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantLB := `metadata:{name:"prod-shop-web" labels:{key:"k8s.weft.dev/cluster" value:"prod"} labels:{key:"k8s.weft.dev/service" value:"shop/web"}}
spec:{vip:"192.0.2.7" primary_zone:"a" backup_zones:"b"
listeners:{name:"http" port:80 protocol:"tcp" mode:"dsr" scheduler:"source-hash" pool:"prod-shop-web-0"}
listeners:{name:"dns" port:53 protocol:"udp" mode:"dsr" scheduler:"source-hash" pool:"prod-shop-web-1"} address_pool:"public"}`
	if got := text(lb); got != text(mustParse(t, wantLB)) {
		t.Errorf("load balancer:\n got %s\nwant %s", got, text(mustParse(t, wantLB)))
	}
	if len(pools) != 2 {
		t.Fatalf("%d pools, want 2 (one per port)", len(pools))
	}
	// Ready or unknown endpoints, sorted, once each; zones that are not
	// DNS labels are left out. The udp port has no slice port: no members.
	wantMembers := `members:{address:"10.1.0.1" port:8080} members:{address:"10.1.0.2" port:8080 zone:"eu-1a"}`
	if got := text(pools[0].GetSpec()); got != text(mustParseSpec(t, wantMembers)) {
		t.Errorf("pool 0 members:\n got %s\nwant %s", got, wantMembers)
	}
	if n := len(pools[1].GetSpec().GetMembers()); n != 0 {
		t.Errorf("pool 1 has %d members, want 0", n)
	}
	// What Translate writes passes Weft's own validation.
	for _, r := range []*weftv1.Resource{{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: lb}}, {Kind: &weftv1.Resource_Pool{Pool: pools[0]}}} {
		if err := validate.Resource(r); err != nil {
			t.Errorf("validate: %v", err)
		}
	}
}

func TestTranslateErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*corev1.Service)
		opts Options
		want string
	}{
		{"no pool", nil, Options{ClusterName: "k8s"}, "annotation weft.dev/address-pool: not set"},
		{"bad vip", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.0.0" }, Options{DefaultAddressPool: "p"}, `spec.loadBalancerIP: "10.0.0" is not an IP address`},
		{"bad mode", func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationMode: "nat"} }, Options{DefaultAddressPool: "p"}, `annotation weft.dev/mode: "nat" is not fullnat, dsr or tunnel`},
		{"sctp", func(s *corev1.Service) { s.Spec.Ports[1].Protocol = corev1.ProtocolSCTP }, Options{DefaultAddressPool: "p"}, "spec.ports[1].protocol: SCTP is not served"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Translate(service(tc.edit), nil, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestResourceName(t *testing.T) {
	long := strings.Repeat("n", 63)
	a, b := ResourceName("k8s", long, "a"), ResourceName("k8s", long, "b")
	if a == b || len(a) > maxBaseName || validate.Name("load balancer", a) != nil {
		t.Errorf("ResourceName of long names: %q and %q, want two different DNS labels of at most %d characters", a, b, maxBaseName)
	}
	if got := ResourceName("k8s", "default", "web"); got != "k8s-default-web" {
		t.Errorf("ResourceName = %q, want k8s-default-web", got)
	}
}

func text(m proto.Message) string {
	return prototext.MarshalOptions{}.Format(m)
}

func mustParse(t *testing.T, s string) *weftv1.LoadBalancer {
	t.Helper()
	var lb weftv1.LoadBalancer
	if err := prototext.Unmarshal([]byte(s), &lb); err != nil {
		t.Fatal(err)
	}
	return &lb
}

func mustParseSpec(t *testing.T, s string) *weftv1.PoolSpec {
	t.Helper()
	var p weftv1.PoolSpec
	if err := prototext.Unmarshal([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}
