package wxqrcode_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/color"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	wxqrcode "github.com/wxqrcode/caddy-wxqrcode"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// Every width of a code is drawn from one master: one WeChat call, each
// width exact, in the master's format, and each one scans to the content
// of the code.
func TestEveryWidthScans(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		wxBlock(fake, "/poster/*", "api unlimited\nscene {path.1}\npage pages/item/item\nis_hyaline {query.hy}\ncap 100000"))
	tests := []struct {
		name, uri, upstream, ctype, content string
	}{
		{"qrcode", "/qr?path=pages/item/item%3Fid%3D42", wechattest.PathQRCode, "image/jpeg", "pages/item/item?id=42"},
		{"unlimited", "/poster/id=42", wechattest.PathUnlimited, "image/jpeg", wechattest.UnlimitedContent("pages/item/item", "id=42")},
		{"unlimited hyaline", "/poster/id=43?hy=true", wechattest.PathUnlimited, "image/png", wechattest.UnlimitedContent("pages/item/item", "id=43")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.Calls(tt.upstream)
			etags := map[string]int{}
			var modified string
			for _, width := range []int{280, 430, 777, 1280} {
				uri := tt.uri + "&width=" + fmt.Sprint(width)
				if !strings.Contains(tt.uri, "?") {
					uri = tt.uri + "?width=" + fmt.Sprint(width)
				}
				resp, body := s.get(uri)
				assertImage(t, resp, body, tt.ctype, width)
				if got, err := wxqrcode.ScanCode(body); got != tt.content {
					t.Errorf("%dpx scans as %q (%v), want %q", width, got, err, tt.content)
				}
				if prev, ok := etags[resp.Header.Get("ETag")]; ok {
					t.Errorf("%dpx has the ETag of %dpx", width, prev)
				}
				etags[resp.Header.Get("ETag")] = width
				if modified == "" {
					modified = resp.Header.Get("Last-Modified")
				} else if got := resp.Header.Get("Last-Modified"); got != modified {
					t.Errorf("%dpx: Last-Modified %q, want the master's %q", width, got, modified)
				}
			}
			if got := fake.Calls(tt.upstream) - before; got != 1 {
				t.Errorf("%d WeChat calls for four widths of one code, want 1", got)
			}
		})
	}
	for _, r := range fake.Requests() {
		if r.Path != wechattest.PathStableToken && !bytes.Contains(r.Body, []byte(`"width":1280`)) {
			t.Errorf("WeChat was asked %s %s, want the master width", r.Path, r.Body)
		}
	}
	waitCached(t, s.dir, len(tests))
}

// Cache-Status tells a fetched code, a width rendered now and one served
// from memory; the master's own width is the master's bytes, untouched.
// Conditional requests, HEAD and ranges work per width.
func TestWidthCacheStatusAndConditionals(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		wxBlock(fake, "/cold", "allow pages/*\ncap 100000\nmemory_cache off"))
	steps := []struct {
		uri    string
		width  int
		status string
	}{
		{"/qr?path=pages/a", 430, "wxqrcode; fwd=uri-miss; stored"},
		{"/qr?path=pages/a", 430, "wxqrcode; hit; detail=memory"},
		{"/qr?path=pages/a&width=600", 600, "wxqrcode; hit; detail=rendered"},
		{"/qr?path=pages/a&width=600", 600, "wxqrcode; hit; detail=memory"},
		{"/qr?path=pages/a&width=1280", 1280, "wxqrcode; hit; detail=memory"},
		{"/cold?path=pages/a&width=1280", 1280, "wxqrcode; hit; detail=storage"},
		// Without a memory cache each width is rendered per request.
		{"/cold?path=pages/a&width=600", 600, "wxqrcode; hit; detail=rendered"},
		{"/cold?path=pages/a&width=600", 600, "wxqrcode; hit; detail=rendered"},
	}
	bodies := map[int][]byte{}
	for _, st := range steps {
		if strings.HasPrefix(st.uri, "/cold") {
			waitCached(t, s.dir, 1) // the cold route reads the storage
		}
		resp, body := s.get(st.uri)
		assertImage(t, resp, body, "image/jpeg", st.width)
		if got := resp.Header.Get("Cache-Status"); got != st.status {
			t.Errorf("%s: Cache-Status %q, want %q", st.uri, got, st.status)
		}
		if prev, ok := bodies[st.width]; ok && !bytes.Equal(prev, body) {
			t.Errorf("%s: %dpx differs from before", st.uri, st.width)
		}
		bodies[st.width] = body
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
	// The master's width is served as WeChat sent it.
	stored, err := os.ReadFile(cachedFiles(t, s.dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, img, _ := bytes.Cut(stored, []byte("\n")); !bytes.Equal(img, bodies[1280]) {
		t.Error("the 1280px answer is not the stored master")
	}

	resp, body := s.get("/qr?path=pages/a&width=600")
	etag := resp.Header.Get("ETag")
	if r, b := s.get("/qr?path=pages/a&width=600", "If-None-Match", etag); r.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Errorf("If-None-Match of its own width: %d, want 304", r.StatusCode)
	}
	if r, _ := s.get("/qr?path=pages/a&width=430", "If-None-Match", etag); r.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match of another width: %d, want 200", r.StatusCode)
	}
	if r, b := s.do(http.MethodHead, "/qr?path=pages/a&width=600"); r.StatusCode != http.StatusOK || len(b) != 0 ||
		r.Header.Get("Content-Length") != fmt.Sprint(len(body)) || r.Header.Get("ETag") != etag {
		t.Errorf("HEAD: %d, Content-Length %q, ETag %q", r.StatusCode, r.Header.Get("Content-Length"), r.Header.Get("ETag"))
	}
	if r, b := s.get("/qr?path=pages/a&width=600", "Range", "bytes=0-9"); r.StatusCode != http.StatusPartialContent || !bytes.Equal(b, body[:10]) {
		t.Errorf("Range: %d with %d bytes, want 206 and the first 10", r.StatusCode, len(b))
	}
}

// Concurrent requests for a new width of one code render it once.
func TestConcurrentWidthRenderedOnce(t *testing.T) {
	s, fake := qrSite(t, "allow pages/*\ncap 100000")
	resp, body := s.get("/qr?path=pages/a&width=1280")
	assertImage(t, resp, body, "image/jpeg", 1280)
	var wg sync.WaitGroup
	etags := make([]string, 20)
	for i := range etags {
		wg.Go(func() {
			resp, err := http.Get(s.url + "/qr?path=pages/a&width=500")
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				etags[i] = resp.Header.Get("ETag")
			}
		})
	}
	wg.Wait()
	for i, e := range etags {
		if e == "" || e != etags[0] {
			t.Fatalf("request %d: ETag %q, want %q", i, e, etags[0])
		}
	}
	logs, err := os.ReadFile(filepath.Join(logDir, t.Name()+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logs), `"rendered width"`); n != 1 {
		t.Errorf("%d renders for 20 concurrent requests of one width, want 1", n)
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

// An entry stored when the width was part of the key is not looked up:
// the code is fetched again at the master width, and served cleanly.
func TestOldKeySchemeEntryIgnored(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	old := wechattest.RenderCode("pages/stale-content", 430, color.NRGBA{A: 0xff}, false)
	canonical := url.Values{"api": {"qrcode"}, "appid": {testAppID}, "path": {"pages/old"}, "width": {"430"}}.Encode()
	sum := sha256.Sum256([]byte(canonical))
	key := hex.EncodeToString(sum[:])
	imgSum := sha256.Sum256(old)
	head, err := json.Marshal(map[string]any{"content_type": "image/jpeg", "sha256": hex.EncodeToString(imgSum[:]),
		"size": len(old), "stored": time.Now().UTC(), "request": canonical})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "wxqrcode", "codes", key[:2], key)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, append(append(head, '\n'), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSite(t, fake, dir, qrBlock(fake, "allow pages/*\ncap 100000"))
	for _, width := range []int{430, 280} {
		resp, body := s.get(fmt.Sprintf("/qr?path=pages/old&width=%d", width))
		assertImage(t, resp, body, "image/jpeg", width)
		if got, err := wxqrcode.ScanCode(body); got != "pages/old" {
			t.Errorf("%dpx scans as %q (%v), want the code fetched now", width, got, err)
		}
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
	waitCached(t, dir, 2) // the old entry stays, unused, beside the new
}

// Widths live in a part of the memory cache of their own: a stranger
// asking many widths of a code pushes out widths, never the masters that
// visitors' codes are served and drawn from.
func TestWidthsDoNotEvictMasters(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/u/*", "api unlimited\nscene {path.1}\npage pages/item/item\ncap 1000 per 1m\nmemory_cache 1MiB"))
	codes := []string{"a", "b", "c", "d", "e"}
	for _, c := range codes {
		resp, body := s.get("/u/" + c + "?width=1280")
		assertImage(t, resp, body, "image/jpeg", 1280)
	}
	rendered := 0
	for w := 1200; w < 1240; w++ {
		resp, body := s.get(fmt.Sprintf("/u/a?width=%d", w))
		assertImage(t, resp, body, "image/jpeg", w)
		rendered += len(body)
	}
	if rendered < 1<<20 {
		t.Fatalf("the widths came to %d bytes, want more than the whole memory cache", rendered)
	}
	for _, c := range codes {
		resp, _ := s.get("/u/" + c + "?width=1280")
		if got := resp.Header.Get("Cache-Status"); got != "wxqrcode; hit; detail=memory" {
			t.Errorf("master %s: Cache-Status %q after the widths, want a memory hit", c, got)
		}
	}
}

// Draws share one bound: past the slots and a short queue, a width is
// refused at once with 503 and Retry-After, and the rest are drawn.
func TestDrawsBounded(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/u/*", "api unlimited\nscene {path.1}\npage pages/item/item\ncap 1000 per 1m"))
	resp, body := s.get("/u/a?width=1280")
	assertImage(t, resp, body, "image/jpeg", 1280)
	const n = 40
	statuses := make([]int, n)
	retry := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := s.get(fmt.Sprintf("/u/a?width=%d", 1200+i))
			statuses[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
			if resp.StatusCode == http.StatusServiceUnavailable {
				assertError(t, resp, body, http.StatusServiceUnavailable, 990503)
			}
		}()
	}
	wg.Wait()
	var ok, refused int
	for i, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			refused++
			if retry[i] != "1" {
				t.Errorf("a refused draw with Retry-After %q, want 1", retry[i])
			}
		default:
			t.Errorf("width %d: status %d", 1200+i, st)
		}
	}
	if refused == 0 || ok == 0 {
		t.Errorf("%d drawn and %d refused of %d widths at once, want some of each", ok, refused, n)
	}
	t.Logf("%d drawn, %d refused", ok, refused)
}

// A width of a code just fetched is never refused by the draws' bound:
// the code is paid for, and its draw waits its turn.
func TestDrawOfNewCodesWaits(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/u/*", "api unlimited\nscene {path.1}\npage pages/item/item\ncap 1000 per 1m"))
	const n = 30
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, _ := s.get(fmt.Sprintf("/u/new%d?width=%d", i, 1200+i))
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("new code %d at a width: status %d, want 200", i, st)
		}
	}
}
