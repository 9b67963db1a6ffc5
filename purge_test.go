package wxqrcode_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// otherAppID is a second app, served by a fake of its own.
const otherAppID = "wx00000000000000ff"

// caddy wxqrcode purge removes one code, every width of it, from the
// storage and the memory cache, leaving the others cached; with --appid
// --all it removes every code of the app and not another app's. Neither
// touches the counts of generated codes; the code asked for again is a
// new call, which the module's count takes and WeChat's Num-Used does not.
func TestPurge(t *testing.T) {
	fake := newFake(t)
	other := wechattest.NewServer(otherAppID, testSecret)
	t.Cleanup(other.Close)
	fakes.Lock()
	fakes.all = append(fakes.all, other)
	fakes.Unlock()
	s := startAdminSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		strings.Replace(wxBlock(other, "/o", "name other\nallow pages/*\ncap 100000"), "appid "+testAppID, "appid "+otherAppID, 1))

	cacheStatus := func(uri string) string {
		t.Helper()
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", widthOf(uri))
		return resp.Header.Get("Cache-Status")
	}
	for _, uri := range []string{"/qr?path=pages/a", "/qr?path=pages/a&width=600", "/qr?path=pages/b", "/o?path=pages/a"} {
		cacheStatus(uri)
	}
	if got := cacheStatus("/qr?path=pages/a&width=600"); got != "wxqrcode; hit; detail=memory" {
		t.Fatalf("width 600 before the purge: Cache-Status %q, want a memory hit", got)
	}
	waitCached(t, s.dir, 3)
	counts := waitGenerated(t, s, testAppID+"   limited      2 of 100000", otherAppID+"   limited      1 of 100000")

	// One code, every width.
	stdout, stderr, status := wxcmd(t, nil, "", "purge", "--address", s.admin, s.url+"/qr?path=pages%2Fa&width=280")
	if status != 0 || !strings.Contains(stdout, s.url+"/qr?path=pages%2Fa&width=280: removed\n") ||
		!strings.Contains(stdout, "storage: FileStorage:"+s.dir+"\n  codes removed: 1\n") {
		t.Fatalf("purge: exit status %d\n%s%s", status, stdout, stderr)
	}
	if m := regexp.MustCompile(`memory entries removed: (\d+)`).FindStringSubmatch(stdout); m == nil || m[1] == "0" {
		t.Errorf("purge removed no memory entry, want the master and its widths:\n%s", stdout)
	}
	if n := len(cachedFiles(t, s.dir)); n != 2 {
		t.Errorf("%d cache entries after purging one of 3, want 2", n)
	}
	if got := generated(t, s); got != counts {
		t.Errorf("counts after the purge:\n%s\nwant as before:\n%s", got, counts)
	}
	calls := fake.CodeCalls()
	if got := cacheStatus("/qr?path=pages/a&width=600"); got != "wxqrcode; fwd=uri-miss; stored" {
		t.Errorf("width 600 after the purge: Cache-Status %q, want a miss", got)
	}
	for _, uri := range []string{"/qr?path=pages/b", "/o?path=pages/a"} {
		if got := cacheStatus(uri); got != "wxqrcode; hit; detail=memory" {
			t.Errorf("%s after purging another code: Cache-Status %q, want a memory hit", uri, got)
		}
	}
	if n := fake.CodeCalls() - calls; n != 1 {
		t.Errorf("%d code calls after the purge, want 1", n)
	}
	if n := fake.Generated(); n != 2 {
		t.Errorf("WeChat counts %d codes, want 2: a code asked again is not a new one", n)
	}
	// The caps count the call again: it spent one of their codes.
	waitGenerated(t, s, testAppID+"   limited      3 of 100000")

	// A code not cached, a URL no handler serves, one its route refuses.
	stdout, stderr, status = wxcmd(t, nil, "", "purge", "--address", s.admin,
		s.url+"/qr?path=pages/c", s.url+"/nothing", s.url+"/qr?path=admin/x")
	if status != 1 || !strings.Contains(stdout, s.url+"/qr?path=pages/c: not cached") ||
		!strings.Contains(stderr, s.url+"/nothing: no wxqrcode handler's route matches it; name one with --name") ||
		!strings.Contains(stderr, "(errcode 990403)") || !strings.Contains(stderr, "2 of 3 URLs not purged") {
		t.Errorf("purge of uncached and unserved URLs: exit status %d\n%s%s", status, stdout, stderr)
	}
	// --name picks the handler whatever the URL's route; not with --all.
	stdout, stderr, status = wxcmd(t, nil, "", "purge", "--address", s.admin, "--name", "other", s.url+"/nothing?path=pages/z")
	if status != 0 || !strings.Contains(stdout, s.url+"/nothing?path=pages/z: not cached") {
		t.Errorf("purge --name other: exit status %d\n%s%s", status, stdout, stderr)
	}
	_, stderr, status = wxcmd(t, nil, "", "purge", "--address", s.admin, "--name", "other", "--appid", otherAppID, "--all")
	if status == 0 || !strings.Contains(stderr, "--name picks the handler of URLs") {
		t.Errorf("purge --name with --all: exit status %d\n%s", status, stderr)
	}

	// Every code of one app.
	waitCached(t, s.dir, 3)
	stdout, stderr, status = wxcmd(t, nil, "", "purge", "--config", s.config, "--appid", testAppID, "--all")
	if status != 0 || !strings.Contains(stdout, "storage: FileStorage:"+s.dir+"\n  codes of "+testAppID+" removed: 2\n") {
		t.Fatalf("purge --all: exit status %d\n%s%s", status, stdout, stderr)
	}
	if n := len(cachedFiles(t, s.dir)); n != 1 {
		t.Errorf("%d cache entries after purging an app, want the other app's 1", n)
	}
	if got := cacheStatus("/o?path=pages/a"); got != "wxqrcode; hit; detail=memory" {
		t.Errorf("the other app's code after purging an app: Cache-Status %q, want a memory hit", got)
	}
	calls = fake.CodeCalls()
	for _, uri := range []string{"/qr?path=pages/a&width=600", "/qr?path=pages/b"} {
		if got := cacheStatus(uri); got != "wxqrcode; fwd=uri-miss; stored" {
			t.Errorf("%s after purging its app: Cache-Status %q, want a miss", uri, got)
		}
	}
	if n := fake.CodeCalls() - calls; n != 2 {
		t.Errorf("%d code calls after purging the app, want 2", n)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"purge", "--address", s.admin, "--all"}, "--all needs --appid"},
		{[]string{"purge", "--address", s.admin, "--appid", testAppID}, "say --all too"},
		{[]string{"purge", "--address", s.admin, "--appid", testAppID, "--all", s.url + "/qr?path=pages/a"}, "give no URL with it"},
		{[]string{"purge", "--address", s.admin, "--appid", "wx/../x", "--all"}, "--appid may hold only"},
		{[]string{"purge", "--address", s.admin}, "give the URLs of the codes to purge"},
	} {
		_, stderr, status := wxcmd(t, nil, "", tc.args...)
		if status == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit status %d, want non-zero saying %q:\n%s", tc.args, status, tc.want, stderr)
		}
	}
}

// widthOf is the width a test URI asks for: its width parameter, or 430.
func widthOf(uri string) int {
	if strings.Contains(uri, "width=600") {
		return 600
	}
	return 430
}

// generated is what caddy wxqrcode stats prints of the codes generated
// through the module.
func generated(t *testing.T, s *adminSite) string {
	t.Helper()
	stdout, stderr, status := wxcmd(t, nil, "", "stats", "--address", s.admin)
	if status != 0 {
		t.Fatalf("stats: exit status %d\n%s%s", status, stdout, stderr)
	}
	_, counts, _ := strings.Cut(stdout, "codes generated through the module:\n")
	return counts
}

// waitGenerated waits for the counts of generated codes to hold each of
// want, as they are written every few seconds, and returns them.
func waitGenerated(t *testing.T, s *adminSite, want ...string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		counts := generated(t, s)
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(counts, w)
		}
		if !missing {
			return counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts of generated codes, want %q:\n%s", want, counts)
		}
	}
}
