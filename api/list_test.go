package api

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// TestList_PagesAndSelector: pages of limit resources, in name order, that
// together hold every resource the selector keeps, each exactly once; bad
// selectors and page tokens are refused naming the field.
func TestList_PagesAndSelector(t *testing.T) {
	n := newTestNode(t)
	c := n.client(n.admin)
	var batch []*weftv1.Resource
	for i := range 7 {
		p := pool(fmt.Sprintf("p%d", i))
		p.Metadata.Labels = map[string]string{"env": []string{"prod", "dev"}[i%2]}
		if i < 3 {
			p.Metadata.Labels["tier"] = "web"
		}
		batch = append(batch, asRes(p))
	}
	if _, err := apply(c, false, batch...); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	all := func(limit uint32, sel string) ([]string, int) {
		t.Helper()
		var names []string
		pages, token := 0, ""
		for {
			res, err := c.LB.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{Limit: limit, Selector: sel, PageToken: token}))
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if limit > 0 && len(res.Msg.GetPools()) > int(limit) {
				t.Fatalf("a page of %d pools, limit %d", len(res.Msg.GetPools()), limit)
			}
			for _, p := range res.Msg.GetPools() {
				names = append(names, p.GetMetadata().GetName())
			}
			if token = res.Msg.GetNextPageToken(); token == "" {
				return names, pages
			}
		}
	}
	tests := []struct {
		limit     uint32
		selector  string
		want      string
		wantPages int
	}{
		{0, "", "[p0 p1 p2 p3 p4 p5 p6]", 1},
		{3, "", "[p0 p1 p2 p3 p4 p5 p6]", 3},
		{7, "", "[p0 p1 p2 p3 p4 p5 p6]", 1},
		{2, "env=prod", "[p0 p2 p4 p6]", 2},
		{0, "env!=prod", "[p1 p3 p5]", 1},
		{1, "env=prod, tier", "[p0 p2]", 2},
		{0, "!tier", "[p3 p4 p5 p6]", 1},
		{0, "env=staging", "[]", 1},
	}
	for _, tc := range tests {
		names, pages := all(tc.limit, tc.selector)
		if got := fmt.Sprint(names); got != tc.want || pages != tc.wantPages {
			t.Errorf("limit %d, selector %q: %s in %d pages, want %s in %d", tc.limit, tc.selector, got, pages, tc.want, tc.wantPages)
		}
	}
	for _, req := range []*weftv1.ListRequest{{Selector: "env=a=b"}, {Selector: "env,,tier"}, {PageToken: "not base64!"}} {
		_, err := c.LB.ListPools(ctx, connect.NewRequest(req))
		wantCode(t, err, connect.CodeInvalidArgument)
	}
}

func TestSelector(t *testing.T) {
	labels := map[string]string{"env": "prod", "tier": "web"}
	tests := []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"env=prod", true},
		{" env = prod ,tier=web", true},
		{"env=dev", false},
		{"env!=dev", true},
		{"env!=prod", false},
		{"tier", true},
		{"zone", false},
		{"!zone", true},
		{"!tier", false},
		{"zone!=a", true}, // absent: not a
	}
	for _, tc := range tests {
		sel, err := parseSelector(tc.sel)
		if err != nil {
			t.Errorf("parseSelector(%q): %v", tc.sel, err)
			continue
		}
		if got := sel.matches(labels); got != tc.want {
			t.Errorf("%q matches %v: got %v, want %v", tc.sel, labels, got, tc.want)
		}
	}
	for _, bad := range []string{"=prod", "env=a=b", "a,,b", "!", "a b"} {
		if _, err := parseSelector(bad); err == nil {
			t.Errorf("parseSelector(%q): no error", bad)
		}
	}
}

func FuzzSelector(f *testing.F) {
	for _, s := range []string{"env=prod", "a!=b,!c,d", "", "=,!="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := parseSelector(s)
		if err != nil {
			return
		}
		// A selector keeps what each of its terms keeps.
		labels := map[string]string{"env": "prod"}
		all := true
		for _, term := range sel {
			all = all && selector{term}.matches(labels)
		}
		if sel.matches(labels) != all {
			t.Errorf("%q: matches differs from its terms'", s)
		}
	})
}
