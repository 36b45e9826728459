package manifest

import (
	"bytes"
	"testing"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestJSON(t *testing.T) {
	m := &weftv1.Pool{
		Metadata: &weftv1.Metadata{Name: "web", Version: 3},
		Spec:     &weftv1.PoolSpec{Members: []*weftv1.Member{{Address: "192.0.2.1", Port: 80, Weight: proto.Int32(0)}}},
	}
	const want = `{
  "metadata": {
    "name": "web",
    "version": "3"
  },
  "spec": {
    "members": [
      {
        "address": "192.0.2.1",
        "port": 80,
        "weight": 0
      }
    ]
  }
}
`
	var buf bytes.Buffer
	if err := JSON(&buf, m); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if buf.String() != want {
		t.Errorf("JSON:\n got %s\nwant %s", buf.String(), want)
	}
}

func TestYAML(t *testing.T) {
	tests := []struct {
		name string
		in   proto.Message
		want string
	}{
		{
			name: "fields in declaration order",
			in: &weftv1.APIToken{
				Id: "t1", Description: "ci: deploys", Role: "operator",
				ExpiresAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), CreateIndex: 9,
			},
			want: "id: t1\ndescription: 'ci: deploys'\nrole: operator\nexpiresAt: \"2026-01-02T03:04:05Z\"\ncreateIndex: \"9\"\n",
		},
		{
			name: "empty message",
			in:   &weftv1.NodeStatus{},
			want: "{}\n",
		},
		{
			name: "empty list and nested message",
			in:   &weftv1.Node{Metadata: &weftv1.Metadata{}, Status: &weftv1.NodeStatus{Suffrage: "voter", Leader: true}},
			want: "metadata: {}\nstatus:\n  suffrage: voter\n  leader: true\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := YAML(&buf, tc.in); err != nil {
				t.Fatalf("YAML: %v", err)
			}
			if buf.String() != tc.want {
				t.Errorf("YAML:\n got %q\nwant %q", buf.String(), tc.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		rows   [][]string
		want   string
	}{
		{
			name:   "aligned",
			header: []string{"name", "vip", "listeners"},
			rows:   [][]string{{"web", "198.51.100.10", "2"}, {"a-much-longer-name", "2001:db8::10", "10"}},
			want: "NAME                 VIP             LISTENERS\n" +
				"web                  198.51.100.10   2\n" +
				"a-much-longer-name   2001:db8::10    10\n",
		},
		{
			name:   "no rows",
			header: []string{"name", "zone"},
			want:   "NAME   ZONE\n",
		},
		{
			name:   "tabs and newlines in cells",
			header: []string{"name", "note"},
			rows:   [][]string{{"a\tb", "line1\nline2"}},
			want:   "NAME   NOTE\na b    line1 line2\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Table(&buf, tc.header, tc.rows); err != nil {
				t.Fatalf("Table: %v", err)
			}
			if buf.String() != tc.want {
				t.Errorf("Table:\n got %q\nwant %q", buf.String(), tc.want)
			}
		})
	}
}
