package l7

import (
	"crypto/tls"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
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
