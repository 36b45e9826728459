package l7

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2specPath finds the h2spec binary `make test-tools` installs into the
// repository's bin/, or one on PATH.
func h2specPath() string {
	if p, err := filepath.Abs(filepath.Join("..", "bin", "h2spec")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath("h2spec")
	return p
}

// TestH2Spec runs h2spec (every case, strict ones included) against an h2c
// and an h2-over-TLS listener proxying to an HTTP/1.1 member: the proxy
// must answer every case as RFC 9113 says, 0 failures.
func TestH2Spec(t *testing.T) {
	bin := h2specPath()
	if bin == "" {
		t.Skip("h2spec is not installed: make test-tools")
	}
	b := startBackend(t, "h2spec", nil)
	plain, tlsAddr := freeAddr(t, "127.0.0.10"), freeAddr(t, "127.0.0.10")
	startProxy(t, Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "h2spec.test")},
		Pools:        map[string]Pool{"web": {Members: []Member{b.member()}}},
		Listeners: []Listener{
			{Name: "h2c", Addr: plain, HTTP2: true, DefaultPool: "web"},
			{Name: "h2", Addr: tlsAddr, TLS: true, HTTP2: true, Certificates: []string{"c"}, DefaultPool: "web"},
		},
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"h2c", []string{"-h", plain.Addr().String(), "-p", strconv.Itoa(int(plain.Port()))}},
		{"h2 over tls", []string{"-h", tlsAddr.Addr().String(), "-p", strconv.Itoa(int(tlsAddr.Port())), "-t", "-k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			report := filepath.Join(t.TempDir(), "h2spec.xml")
			args := append(tc.args, "-S", "-o", "5", "-j", report)
			out, runErr := exec.Command(bin, args...).CombinedOutput()
			failures, total, err := h2specFailures(report)
			if err != nil {
				t.Fatalf("h2spec %v: %v (run: %v)\n%s", args, err, runErr, out)
			}
			if total == 0 {
				t.Fatalf("h2spec ran no case\n%s", out)
			}
			for _, f := range failures {
				t.Errorf("h2spec: %s", f)
			}
			if len(failures) > 0 {
				t.Logf("h2spec output:\n%s", out)
			}
		})
	}
}

// h2specFailures reads h2spec's JUnit report: the failed cases by package
// and name, and how many cases ran.
func h2specFailures(path string) ([]string, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Text string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Text string `xml:",chardata"`
				} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &r); err != nil {
		return nil, 0, err
	}
	var failed []string
	total := 0
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			total++
			switch {
			case c.Failure != nil:
				failed = append(failed, s.Package+" "+c.Name+": "+c.Failure.Text)
			case c.Error != nil:
				failed = append(failed, s.Package+" "+c.Name+": "+c.Error.Text)
			}
		}
	}
	return failed, total, nil
}

// TestH2Guard feeds frames through an h2guard and reads what the server
// would: duplicate settings keep their last value, a block with a
// connection-specific field ends with the invalid field, others pass as
// they are.
func TestH2Guard(t *testing.T) {
	var in bytes.Buffer
	in.WriteString(h2Preface)
	fr := http2.NewFramer(&in, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	var blocks []bytes.Buffer
	for _, extra := range []hpack.HeaderField{{Name: "x-ok", Value: "1"}, {Name: "connection", Value: "keep-alive"},
		{Name: "te", Value: "trailers"}, {Name: "te", Value: "gzip"}} {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/"}, extra} {
			enc.WriteField(f)
		}
		blocks = append(blocks, b)
	}
	for i, b := range blocks {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: b.Bytes(), EndHeaders: true, EndStream: true})
	}
	fr.WriteData(9, true, []byte("body"))

	client, server := net.Pipe()
	go func() { client.Write(in.Bytes()); client.Close() }()
	g := newH2Guard(server, false)
	preface := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(g, preface); err != nil || string(preface) != h2Preface {
		t.Fatalf("preface = %q, %v", preface, err)
	}
	out := http2.NewFramer(nil, g)
	f, err := out.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var settings []http2.Setting
	f.(*http2.SettingsFrame).ForeachSetting(func(s http2.Setting) error { settings = append(settings, s); return nil })
	want := []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1}, {ID: http2.SettingMaxFrameSize, Val: 20000}}
	if !slices.Equal(settings, want) {
		t.Errorf("settings = %v, want %v", settings, want)
	}
	for i, bad := range []bool{false, true, false, true} {
		f, err := out.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		h := f.(*http2.HeadersFrame)
		if !bytes.Equal(h.HeaderBlockFragment(), blocks[i].Bytes()) || h.HeadersEnded() == bad {
			t.Errorf("block %d: fragment changed or END_HEADERS = %v", i, h.HeadersEnded())
		}
		if bad {
			f, err := out.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			c, ok := f.(*http2.ContinuationFrame)
			if !ok || c.StreamID != h.StreamID || !c.HeadersEnded() || !bytes.Equal(c.HeaderBlockFragment(), invalidField) {
				t.Errorf("block %d: got %v after it, want a CONTINUATION with the invalid field", i, f)
			}
		}
	}
	if f, err := out.ReadFrame(); err != nil || string(f.(*http2.DataFrame).Data()) != "body" {
		t.Errorf("DATA frame = %v, %v", f, err)
	}
}

// FuzzH2Guard feeds a preface and arbitrary frames through an h2guard:
// it must not panic or stop short, and what it leaves alone (everything
// but SETTINGS and header blocks) must pass byte for byte.
func FuzzH2Guard(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 2})
	var block bytes.Buffer
	hpack.NewEncoder(&block).WriteField(hpack.HeaderField{Name: "connection", Value: "close"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte("data"))
	fr.WritePing(false, [8]byte{1})
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, frames []byte) {
		in := append([]byte(h2Preface), frames...)
		client, server := net.Pipe()
		go func() { client.Write(in); client.Close() }()
		out, err := io.ReadAll(newH2Guard(server, false))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(out, []byte(h2Preface)) {
			t.Fatalf("the preface did not pass")
		}
		if !mayChange(frames) && !bytes.Equal(out[len(h2Preface):], frames) {
			t.Fatalf("frames the guard leaves alone changed:\n in %x\nout %x", frames, out[len(h2Preface):])
		}
	})
}

// mayChange reports whether b holds a frame the guard may rewrite: a
// SETTINGS, HEADERS or CONTINUATION frame.
func mayChange(b []byte) bool {
	for len(b) >= 9 {
		if t := b[3]; t == frameSettings || t == frameHeaders || t == frameContinuation {
			return true
		}
		n := 9 + (int(b[0])<<16 | int(b[1])<<8 | int(b[2]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}
