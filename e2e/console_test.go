package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// screenshotsEnv names the directory the console test writes its
// screenshots to (default: a temporary one); docs/console holds a set.
const screenshotsEnv = "WEFT_CONSOLE_SCREENSHOTS"

// chromiumPath finds Debian's chromium (make test-tools installs it as
// root). Without it the test skips, except under CI, which must run it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; make test-tools installs Debian's chromium as root")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or make test-tools as root): the console is not driven")
	return ""
}

// spkiHash is what Chromium's --ignore-certificate-errors-spki-list takes:
// the base64 SHA-256 of a certificate's public key. The browser then
// trusts that key alone, as an operator who imported the cluster CA would
// trust the node.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browser is a headless Chromium tab and what its page logged.
type browser struct {
	t        *testing.T
	ctx      context.Context
	shots    string
	mu       sync.Mutex
	problems []string // exceptions and errors the page logged, but failed requests
}

func newBrowser(t *testing.T, chromium, spki string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in CI; the page is our own
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser, with no timeout: one would stop it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("start chromium %s: %v", chromium, err)
		}
		t.Skipf("chromium %s cannot be started here: %v", chromium, err)
	}
	b := &browser{t: t, ctx: ctx, shots: os.Getenv(screenshotsEnv)}
	if b.shots == "" {
		b.shots = t.TempDir()
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			// A refused call is logged as a failed request (the bad token);
			// anything else an error or exception is a bug of the page or a
			// violation of its Content-Security-Policy.
			if (m.Type == chromedp.ConsoleError || m.IsException()) && m.Source != "network" {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs steps with a deadline.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.checkNoProblems()
		b.t.Fatalf("%s: %v", what, err)
	}
}

// setValue sets the value of the input or text area sel as typing would,
// with an input event.
func (b *browser) setValue(sel, value string) chromedp.Action[chromedp.Void] {
	js, err := json.Marshal(value)
	if err != nil {
		b.t.Fatal(err)
	}
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(e => { e.value = %s; e.dispatchEvent(new Event('input', {bubbles: true})); })(document.querySelector(%q))`, js, sel))
}

// text is the text of the first element sel matches, "" when none does.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {textContent: ''}).textContent`, sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitText waits until the text of sel satisfies ok.
func (b *browser) waitText(limit time.Duration, sel, what string, ok func(string) bool) string {
	b.t.Helper()
	var got string
	waitFor(b.t, limit, what, func() error {
		if got = b.text(sel); !ok(got) {
			return fmt.Errorf("%s reads %q", sel, got)
		}
		return nil
	})
	return got
}

func (b *browser) waitContains(limit time.Duration, sel string, want ...string) {
	b.t.Helper()
	b.waitText(limit, sel, sel+" shows "+strings.Join(want, ", "), func(s string) bool {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	})
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) checkNoProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Errorf("the page logged %d errors:\n%s", len(b.problems), strings.Join(b.problems, "\n"))
	}
}

// TestConsole drives the web console with headless Chromium against a
// one-node cluster forwarding with the userspace dataplane: a wrong token is
// refused with the API's error; logged in, the console lists the load
// balancer with its members up and rates from the StatsService while
// connections go through the VIP; a pool edited as YAML and applied takes a
// new member, which comes up; a bad pool is refused with the API's
// validation error, word for word, and a bad document with the one `weft
// apply -f` prints; the cluster page shows the node as Raft leader and alive.
// Screenshots go to $WEFT_CONSOLE_SCREENSHOTS.
func TestConsole(t *testing.T) {
	chromium := chromiumPath(t)
	c := newCluster(t, 61)
	// The BGP peer never answers: the session stays down, and the node
	// still says what it announces.
	n1 := c.newAgent("node1", "a", "--dataplane", "userspace", "--bgp-asn", "64513", "--bgp-peer", "127.0.61.254:64512")
	c.initCluster(n1)
	cl := c.client(n1)
	ctx := context.Background()

	addrs := map[string]string{}
	for _, name := range []string{"alpha", "beta", "gamma"} {
		addrs[name] = nameServer(t, name).Addr().String()
	}
	member := func(name string) string {
		host, port, _ := net.SplitHostPort(addrs[name])
		return fmt.Sprintf("{address: %s, port: %s}", host, port)
	}
	pool := func(members ...string) string {
		return fmt.Sprintf(`kind: Pool
metadata: {name: web}
spec:
  members: [%s]
  healthCheck: {type: tcp, interval: 1s, rise: 1, fall: 1}
`, strings.Join(members, ", "))
	}
	if _, err := c.weft(n1, pool(member("alpha"), member("beta"))+`---
kind: LoadBalancer
metadata: {name: web, labels: {env: demo}}
spec:
  vip: 127.0.61.100
  listeners: [{name: tcp-9000, port: 9000, protocol: tcp, pool: web}]
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t, chromium, spkiHash(t, filepath.Join(n1.dataDir, "tls", "node.crt")))
	url := "https://" + n1.apiAddr() + "/"

	// A wrong token: the API's answer, and no way in.
	b.do("open the console", chromedp.Navigate(url), chromedp.WaitVisible(`#token`))
	parts := strings.Split(c.adminToken, "_")
	wrong := strings.Join(parts[:2], "_") + "_" + strings.Repeat("0", len(parts[2]))
	b.do("log in with a wrong token", chromedp.SendKeys(`#token`, wrong), chromedp.Click(`#login button[type=submit]`))
	b.waitContains(10*time.Second, `#login-error`, "unauthenticated: api token "+parts[1]+" is not valid")
	if bar, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('#bar')).display`)); err != nil || bar != "none" {
		t.Errorf("the navigation bar before login: display %q (%v), want none", bar, err)
	}
	b.screenshot("login-refused")

	b.do("log in", b.setValue(`#token`, c.adminToken),
		chromedp.Click(`#login button[type=submit]`), chromedp.WaitVisible(`#lbs`))
	if loc, err := chromedp.Run(b.ctx, chromedp.Location()); err != nil || strings.Contains(loc, c.adminToken) || !strings.HasSuffix(loc, "/ui/#/lbs") {
		t.Errorf("location after login %q (%v), want .../ui/#/lbs without the token", loc, err)
	}
	b.waitContains(10*time.Second, `#whoami`, "node1", "leader")
	b.waitContains(10*time.Second, `#lbs tr[data-lb="web"]`, "127.0.61.100", "tcp/9000", "2/2 up")

	// Traffic through the VIP until the load balancer's page shows a rate.
	stop := make(chan struct{})
	var dialers sync.WaitGroup
	dialers.Add(1)
	go func() {
		defer dialers.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if conn, err := net.DialTimeout("tcp", "127.0.61.100:9000", time.Second); err == nil {
				conn.Close()
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		dialers.Wait()
	}()
	b.screenshot("load-balancers")
	b.do("open the load balancer", chromedp.Click(`#lbs tr[data-lb="web"] a`), chromedp.WaitVisible(`#backends-tcp-9000`))
	for _, m := range []string{"alpha", "beta"} {
		b.waitContains(10*time.Second, fmt.Sprintf(`#backends-tcp-9000 tr[data-member="%s"]`, addrs[m]), "up")
	}
	b.waitText(10*time.Second, `section[data-listener="tcp-9000"] p`, "a new-flow rate", func(s string) bool {
		before, _, ok := strings.Cut(s, " new/s")
		f := strings.Fields(before)
		return ok && len(f) > 0 && f[len(f)-1] != "0"
	})
	b.screenshot("load-balancer")
	close(stop)
	dialers.Wait()

	// A change: the pool edited as YAML (with its version) takes gamma.
	b.do("open the pool", chromedp.Click(`a[href="#/pool/web"]`), chromedp.WaitVisible(`#members`))
	b.waitContains(10*time.Second, fmt.Sprintf(`#members tr[data-member="%s"]`, addrs["alpha"]), "up")
	b.screenshot("pool")
	b.do("edit the pool", chromedp.Click(`#edit`), chromedp.WaitVisible(`#yaml`))
	edited, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('#yaml').value`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(edited, "kind: Pool") || !strings.Contains(edited, "version:") || strings.Contains(edited, "status:") {
		t.Fatalf("the pool as YAML to edit:\n%s\nwant its kind and version and no status", edited)
	}
	host, port, _ := net.SplitHostPort(addrs["gamma"])
	changed := strings.Replace(edited, "  members:\n", fmt.Sprintf("  members:\n    - address: %s\n      port: %s\n", host, port), 1)
	b.do("dry-run the change", b.setValue(`#yaml`, changed), chromedp.Click(`#dry-run`))
	b.waitContains(10*time.Second, `#apply-results`, "Pool", "web", "updated (dry run)")
	if got, err := cl.LB.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "web"})); err != nil || len(got.Msg.GetPool().GetSpec().GetMembers()) != 2 {
		t.Fatalf("pool after the console's dry run: %v %v, want its 2 members", got.Msg.GetPool(), err)
	}
	b.do("apply the change", chromedp.Click(`#apply`))
	b.waitContains(10*time.Second, `#apply-results`, "Pool", "web", "updated")
	b.screenshot("apply")
	got, err := cl.LB.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "web"}))
	if err != nil || len(got.Msg.GetPool().GetSpec().GetMembers()) != 3 {
		t.Fatalf("pool after the console's apply: %v %v, want 3 members", got.Msg.GetPool(), err)
	}
	b.do("back to the load balancer", chromedp.Click(`a[href="#/lbs"]`), chromedp.WaitVisible(`#lbs`))
	b.waitContains(10*time.Second, `#lbs tr[data-lb="web"]`, "3/3 up")

	// Bad input: the API's validation error as the API gives it.
	bad := pool(member("alpha"), "{address: 10.0.0.1, port: 0}")
	b.do("open apply", chromedp.Click(`a[href="#/apply"]`), chromedp.WaitVisible(`#yaml`))
	b.do("apply a bad pool", b.setValue(`#yaml`, bad), chromedp.Click(`#apply`), chromedp.WaitVisible(`#apply-error`))
	rs, err := manifest.Decode(strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, apiErr := cl.LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: rs}))
	if connect.CodeOf(apiErr) != connect.CodeInvalidArgument {
		t.Fatalf("the API took the bad pool: %v", apiErr)
	}
	if shown := b.text(`#apply-error`); shown != apiErr.Error() {
		t.Errorf("the console shows %q for the bad pool, the API answers %q", shown, apiErr.Error())
	}
	b.screenshot("apply-invalid")
	// A misspelt field, in markup: the error names it, as text.
	unknown := strings.Replace(bad, "healthCheck:", "healthCheck<img src=x onerror=alert(1)>:", 1)
	_, decodeErr := manifest.Decode(strings.NewReader(unknown))
	var ce *connect.Error
	if decodeErr == nil || errors.As(decodeErr, &ce) {
		t.Fatalf("decode of a misspelt field: %v", decodeErr)
	}
	b.do("apply a misspelt field", b.setValue(`#yaml`, unknown), chromedp.Click(`#apply`))
	b.waitText(10*time.Second, `#apply-error`, "the decode error", func(s string) bool {
		return s == "invalid_argument: "+decodeErr.Error()
	})
	if imgs, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('img').length`)); err != nil || imgs != 0 {
		t.Errorf("the page has %d img elements (%v) after showing an error with markup, want none", imgs, err)
	}
	if got, err := cl.LB.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "web"})); err != nil || len(got.Msg.GetPool().GetSpec().GetMembers()) != 3 {
		t.Errorf("pool after the refused applies: %v %v, want the 3 members still", got.Msg.GetPool(), err)
	}

	b.do("open the cluster", chromedp.Click(`a[href="#/cluster"]`), chromedp.WaitVisible(`#nodes`))
	b.waitContains(10*time.Second, `#nodes tr[data-node="node1"]`, "leader", "alive", testVersion)
	b.waitContains(10*time.Second, `#subsystems`, "dataplane", "health")
	b.waitContains(10*time.Second, `#bgp-peers tbody`, "127.0.61.254", "64512")
	b.waitContains(10*time.Second, `#bgp-announced`, "127.0.61.100/32")
	b.screenshot("cluster")
	b.checkNoProblems()

	// The browser enforces the policy: HTML strings cannot reach the page.
	refused, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](
		`(() => { try { document.body.innerHTML = '<b>x</b>'; return 'allowed'; } catch (e) { return e.name; } })()`))
	if err != nil || refused != "TypeError" {
		t.Errorf("assigning innerHTML: %q (%v), want a TypeError from Trusted Types", refused, err)
	}
}
