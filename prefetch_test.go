package wxqrcode_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestPrefetch fills the cache from a list through the route, as the
// README's command does, and counts what it did.
func TestPrefetch(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000"))
	for i := range 5 { // already cached
		s.get(fmt.Sprintf("/qr?path=pages/list/%d", i))
	}
	var list strings.Builder
	for i := range 200 {
		fmt.Fprintf(&list, "pages/list/%d\n", i)
	}
	list.WriteString("admin/secret\n\npages/" + strings.Repeat("x", 200) + "\n")
	file := filepath.Join(t.TempDir(), "paths.txt")
	if err := os.WriteFile(file, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	before := fake.CodeCalls()
	start := time.Now()
	out, err := exec.Command(builtCaddy(t), "wxqrcode", "prefetch", "--url", s.url+"/qr", "--file", file, "--concurrency", "8").CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("prefetch with failures: %v, want exit status 1\n%s", err, out)
	}
	t.Logf("%s(%v)", out, time.Since(start))
	for _, want := range []string{"202 codes in", "195 fetched, 5 already cached, 2 failed", "errcode 40159: 1", "errcode 990403: 1", "2 of 202 codes failed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if n := fake.CodeCalls() - before; n != 195 {
		t.Errorf("%d code calls, want 195", n)
	}
	// prefetch asked for the masters: the master's width is in memory,
	// and the default width is rendered from it on its first request.
	for _, tc := range []struct {
		uri    string
		width  int
		status string
	}{
		{"/qr?path=pages/list/199&width=1280", 1280, "wxqrcode; hit; detail=memory"},
		{"/qr?path=pages/list/199", 430, "wxqrcode; hit; detail=rendered"},
		{"/qr?path=pages/list/199", 430, "wxqrcode; hit; detail=memory"},
	} {
		resp, body := s.get(tc.uri)
		assertImage(t, resp, body, "image/jpeg", tc.width)
		if got := resp.Header.Get("Cache-Status"); got != tc.status {
			t.Errorf("%s: Cache-Status %q after prefetch, want %q", tc.uri, got, tc.status)
		}
	}
}

// A route with a fixed width takes no width from the query: prefetch's
// requests get that width, and the codes are made once.
func TestPrefetchFixedWidth(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000\nwidth 280"))
	cmd := exec.Command(builtCaddy(t), "wxqrcode", "prefetch", "--url", s.url+"/qr")
	cmd.Stdin = strings.NewReader("pages/a/a\npages/b/b\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "2 fetched, 0 already cached, 0 failed") {
		t.Fatalf("prefetch: %v\n%s", err, out)
	}
	for _, uri := range []string{"/qr?path=pages/a/a", "/qr?path=pages/b/b&width=1280"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 280)
		if got := resp.Header.Get("Cache-Status"); !strings.Contains(got, "; hit") {
			t.Errorf("%s: Cache-Status %q after prefetch, want a hit", uri, got)
		}
	}
	if n := fake.CodeCalls(); n != 2 {
		t.Errorf("%d code calls, want 2", n)
	}
}

// Each value fills the {} of --url, here the scene in an unlimited
// route's path; a repeated value is asked once.
func TestPrefetchIntoPath(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/poster/*", "api unlimited\nscene {path.1}\nwidth {query.w}\ncap 100000"))
	cmd := exec.Command(builtCaddy(t), "wxqrcode", "prefetch", "--url", s.url+"/poster/{}?w=280")
	cmd.Stdin = strings.NewReader("id=1&from=a\nid=2\nid=1&from=a\nx!y(1)\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("prefetch: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "3 codes in") || !strings.Contains(string(out), "3 fetched, 0 already cached, 0 failed (1 repeated line skipped)") {
		t.Errorf("summary:\n%s", out)
	}
	if n := fake.CodeCalls(); n != 3 {
		t.Errorf("%d code calls, want 3", n)
	}
	for _, uri := range []string{"/poster/id=1&from=a?w=280", "/poster/id=2?w=280", "/poster/x!y(1)?w=280"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 280)
		if !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			t.Errorf("%s: Cache-Status %q after prefetch, want a hit", uri, resp.Header.Get("Cache-Status"))
		}
	}
}

// A spent budget ends the run, with what was not asked counted.
func TestPrefetchStopsAtBudget(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "cap 10"))
	var list strings.Builder
	for i := range 100 {
		fmt.Fprintf(&list, "pages/budget/%d\n", i)
	}
	cmd := exec.Command(builtCaddy(t), "wxqrcode", "prefetch", "--url", s.url+"/qr", "--concurrency", "2")
	cmd.Stdin = strings.NewReader(list.String())
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "budget of new codes is spent") {
		t.Fatalf("want the run to end on the budget, got %v:\n%s", err, out)
	}
	if !strings.Contains(string(out), "10 fetched") || !strings.Contains(string(out), "not asked") {
		t.Errorf("summary:\n%s", out)
	}
	if n := fake.CodeCalls(); n != 10 {
		t.Errorf("%d code calls, want 10", n)
	}
}

// TestStats reads what the cache holds and the counts, from a stopped
// Caddy's storage.
func TestStats(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	s := startSite(t, fake, dir, qrBlock(fake, "allow *\ncap 100000")+wxBlock(fake, "/u", "api unlimited\ncap 100000"))
	for _, uri := range []string{"/qr?path=pages/a", "/qr?path=pages/b", "/u?scene=s1", "/qr?path=pages/a"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if err := caddy.Stop(); err != nil { // waits for the stores
		t.Fatal(err)
	}
	out, err := exec.Command(builtCaddy(t), "wxqrcode", "stats", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	for _, want := range []string{"codes cached: 3 (", "qrcode       " + testAppID + "   2", "unlimited    " + testAppID + "   1",
		testAppID + "   limited      2 of 100000", testAppID + "   unlimited    1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
}

// With --appid, each URL is signed here for a route with sign_key, with
// the key in WXQRCODE_SIGN_KEY unless --key-env names another variable, as
// caddy wxqrcode sign does.
func TestPrefetchSigned(t *testing.T) {
	fake := newFake(t)
	t.Setenv(signKeyEnv, signKey)
	s := startSite(t, fake, "", qrBlock(fake, "sign_key {env."+signKeyEnv+"}"))
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(builtCaddy(t), append([]string{"wxqrcode", "prefetch", "--url", s.url + "/qr?width=280"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader("pages/a/a\npages/b/b?id=1\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(nil); err == nil || !strings.Contains(out, "errcode 990411: 2") {
		t.Errorf("unsigned prefetch on a signed route: %v\n%s", err, out)
	}
	out, err := run(nil, "--key-env", signKeyEnv, "--appid", testAppID)
	if err != nil || !strings.Contains(out, "2 fetched, 0 already cached, 0 failed") {
		t.Fatalf("signed prefetch: %v\n%s", err, out)
	}
	out, err = run([]string{"WXQRCODE_SIGN_KEY=" + signKey}, "--appid", testAppID)
	if err != nil || !strings.Contains(out, "0 fetched, 2 already cached, 0 failed") {
		t.Errorf("prefetch --appid with the key in WXQRCODE_SIGN_KEY: %v\n%s", err, out)
	}
	if out, err := run(nil, "--key-env", signKeyEnv); err == nil || !strings.Contains(out, "--key-env does not apply") {
		t.Errorf("--key-env without --appid: %v\n%s", err, out)
	}
	if n := fake.CodeCalls(); n != 2 {
		t.Errorf("%d code calls, want 2", n)
	}
}
