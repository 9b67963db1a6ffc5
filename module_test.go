package wxqrcode_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	_ "image/jpeg"
	"image/png"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

func TestThreeAPIs(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		wxBlock(fake, "/wxa", "api wxacode\nis_hyaline {query.hyaline}\nline_color {query.color}\nallow *\ncap 100000")+
		wxBlock(fake, "/poster/*", "api unlimited\nscene {path.1}\npage pages/item/item\nwidth 300\ncap 100000"))
	tests := []struct {
		name, uri, upstream, ctype string
		width                      int
		calls                      int // 0: a width of a code made before
	}{
		{"qrcode", "/qr?path=pages/item/item%3Fid%3D42", wechattest.PathQRCode, "image/jpeg", 430, 1},
		{"qrcode width", "/qr?path=pages/item/item%3Fid%3D42&width=280", wechattest.PathQRCode, "image/jpeg", 280, 0},
		{"wxacode", "/wxa?path=pages/item/item%3Fid%3D42&color=%23ff0000", wechattest.PathWxaCode, "image/jpeg", 430, 1},
		{"wxacode hyaline", "/wxa?path=pages/item/item%3Fid%3D42&hyaline=true&width=640", wechattest.PathWxaCode, "image/png", 640, 1},
		{"unlimited", "/poster/id=42&from=x", wechattest.PathUnlimited, "image/jpeg", 300, 1},
	}
	codes := 0
	for _, tt := range tests {
		codes += tt.calls
		t.Run(tt.name, func(t *testing.T) {
			before := fake.Calls(tt.upstream)
			resp, body := s.get(tt.uri)
			assertImage(t, resp, body, tt.ctype, tt.width)
			if got := fake.Calls(tt.upstream) - before; got != tt.calls {
				t.Fatalf("%d upstream calls, want %d", got, tt.calls)
			}
			resp2, body2 := s.get(tt.uri)
			assertImage(t, resp2, body2, tt.ctype, tt.width)
			if !bytes.Equal(body, body2) || resp.Header.Get("ETag") != resp2.Header.Get("ETag") {
				t.Error("cached response differs from the first")
			}
			if got := fake.Calls(tt.upstream) - before; got != tt.calls {
				t.Fatalf("%d upstream calls after a cached request, want %d", got, tt.calls)
			}
		})
	}
	if n := fake.TokenCalls(); n != 1 {
		t.Errorf("%d token calls, want 1", n)
	}
	waitCached(t, s.dir, codes)
}

// Parameters that resolve to the same request share one entry.
func TestCanonicalKey(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	for _, uri := range []string{"/qr?path=a", "/qr?path=a&width=", "/qr?path=a&width=430", "/qr?width=430&path=a&x=1"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls for one effective request, want 1", n)
	}
}

func TestConditionalAndHead(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	resp, body := s.get("/qr?path=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	etag, modified := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if got := resp.Header.Get("Accept-Ranges"); got != "bytes" {
		t.Errorf("a 200 says Accept-Ranges %q, want bytes", got)
	}
	if r, b := s.get("/qr?path=a", "Range", "bytes=0-9"); r.StatusCode != http.StatusPartialContent || !bytes.Equal(b, body[:10]) {
		t.Errorf("Range: status %d with %d bytes, want 206 and the first 10", r.StatusCode, len(b))
	}

	if r, b := s.get("/qr?path=a", "If-None-Match", etag); r.StatusCode != http.StatusNotModified || len(b) != 0 || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("If-None-Match: status %d with %d bytes, nosniff %q; want 304 and none", r.StatusCode, len(b), r.Header.Get("X-Content-Type-Options"))
	}
	if r, _ := s.get("/qr?path=a", "If-Modified-Since", modified); r.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since: status %d, want 304", r.StatusCode)
	}
	if r, _ := s.get("/qr?path=a", "If-None-Match", `"other"`); r.StatusCode != http.StatusOK {
		t.Errorf("stale If-None-Match: status %d, want 200", r.StatusCode)
	}
	r, b := s.do(http.MethodHead, "/qr?path=a")
	if r.StatusCode != http.StatusOK || len(b) != 0 || r.Header.Get("Content-Length") != fmt.Sprint(len(body)) || r.Header.Get("ETag") != etag ||
		r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("HEAD: status %d, %d bytes, Content-Length %q, nosniff %q", r.StatusCode, len(b), r.Header.Get("Content-Length"), r.Header.Get("X-Content-Type-Options"))
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

func TestUserCacheControlKept(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", `header /qr Cache-Control "public, max-age=60"
	`+qrBlock(fake, "allow *\ncap 100000"))
	resp, _ := s.get("/qr?path=a")
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=60" {
		t.Errorf("Cache-Control %q, want the user's", got)
	}
}

// A code chosen by anything but the URL (a header, a cookie, the client's
// address) is one visitor's: a shared cache must not serve it to all, so
// it is private. A code chosen by the URL alone stays public.
func TestPrivateWhenChosenBeyondURL(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "",
		wxBlock(fake, "/user", "api unlimited\nscene {header.X-User}\npage pages/item/item\ncap 100 per 1m")+
			wxBlock(fake, "/ip", "api unlimited\nscene ip\nwidth {header.X-Width}\npage pages/item/item")+
			wxBlock(fake, "/oa", "api oa_temporary\nscene {cookie.s}\ncap 100 per 1m")+
			"@poster path_regexp poster ^/poster/([0-9A-Za-z]{1,32})\\.png$\n\t"+
			wxBlock(fake, "@poster", "api unlimited\nscene {re.poster.1}\npage pages/item/item\ncap 100 per 1m")+
			wxBlock(fake, "/url/*", "api unlimited\nscene {path.1}\npage pages/item/item\ncap 100 per 1m"))
	for _, tc := range []struct {
		uri    string
		header []string
		want   string
	}{
		{"/user", []string{"X-User", "u42"}, "private, max-age=31536000, immutable"},
		{"/ip", []string{"X-Width", "280"}, "private, max-age=31536000, immutable"},
		{"/oa", []string{"Cookie", "s=login-1"}, "private, max-age="},
		// A matcher's capture may come from a header: private, unless the
		// site's own header directive says otherwise.
		{"/poster/A1.png", nil, "private, max-age=31536000, immutable"},
		{"/url/u42?width=280", nil, "public, max-age=31536000, immutable"},
	} {
		resp, body := s.get(tc.uri, tc.header...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.uri, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Cache-Control"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: Cache-Control %q, want %q", tc.uri, got, tc.want)
		}
	}
}

func TestConcurrentMissOneCall(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	// A slow WeChat keeps the first call in flight while the others arrive.
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Delay: 300 * time.Millisecond}, 1)
	var wg sync.WaitGroup
	statuses := make([]int, 100)
	bodies := make([][]byte, 100)
	for i := range statuses {
		wg.Go(func() {
			resp, err := http.Get(s.url + "/qr?path=pages/item/item%3Fid%3D7")
			if err != nil {
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			bodies[i], _ = readAll(resp)
		})
	}
	wg.Wait()
	for i := range statuses {
		if statuses[i] != http.StatusOK || !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("request %d: status %d", i, statuses[i])
		}
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls for 100 concurrent requests, want 1", n)
	}
}

func TestBadInputSpendsNoCall(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		wxBlock(fake, "/poster", "api unlimited\ncap 100000"))
	tests := []struct {
		uri     string
		status  int
		errcode int
	}{
		{"/qr", 400, 40159},
		{"/qr?path=", 400, 40159},
		{"/qr?path=pages/" + strings.Repeat("a", 124), 400, 40159},
		{"/qr?path=pages/a%3Fscancode_time%3D1", 400, 85096},
		{"/qr?path=pages/a&width=279", 400, 40097},
		{"/qr?path=pages/a&width=1281", 400, 40097},
		{"/qr?path=pages/a&width=big", 400, 40097},
		{"/qr?path=pages/a%00b", 400, 40159},
		{"/qr?path=pages/a%FFb", 400, 40159},
		{"/qr?path=admin/secret", 403, 990403},
		{"/poster", 400, 40169},
		{"/poster?scene=" + strings.Repeat("a", 33), 400, 40169},
		{"/poster?scene=a%20b", 400, 40129},
		{"/poster?scene=a&page=/pages/index/index", 400, 41030},
		{"/poster?scene=a&page=pages/index/index%3Fx%3D1", 400, 41030},
	}
	for _, tt := range tests {
		resp, body := s.get(tt.uri)
		assertError(t, resp, body, tt.status, tt.errcode)
	}
	if fake.CodeCalls() != 0 || fake.TokenCalls() != 0 {
		t.Errorf("bad input made %d code and %d token calls, want none", fake.CodeCalls(), fake.TokenCalls())
	}
	if n := len(cachedFiles(t, s.dir)); n != 0 {
		t.Errorf("%d cache entries after bad input", n)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, body := s.do(m, "/qr?path=a")
		assertError(t, resp, body, 405, 990405)
		if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("Allow %q", got)
		}
	}
	if fake.CodeCalls() != 0 {
		t.Error("a refused method made a call")
	}
}

// TestStatusTable pins every row of the status table, and is the fault
// matrix against a misbehaving WeChat: each fault gives its status and
// body, caches nothing, and the request succeeds once the fault clears.
func TestStatusTable(t *testing.T) {
	html := []byte("<html><body>502 Bad Gateway</body></html>")
	tests := []struct {
		name       string
		path       string // where the fault goes; default the code API
		fault      wechattest.Fault
		status     int
		errcode    int
		retryAfter bool
		verbatim   bool // the body is WeChat's own
		// generic: the body keeps the errcode only; WeChat's message,
		// which may name the server's IP, is for the log.
		generic bool
	}{
		{name: "40097 invalid args", fault: wechattest.Fault{ErrCode: 40097}, status: 400, errcode: 40097, verbatim: true},
		{name: "40159 path length", fault: wechattest.Fault{ErrCode: 40159}, status: 400, errcode: 40159, verbatim: true},
		{name: "40169 scene length", fault: wechattest.Fault{ErrCode: 40169}, status: 400, errcode: 40169, verbatim: true},
		{name: "40129 scene chars", fault: wechattest.Fault{ErrCode: 40129}, status: 400, errcode: 40129, verbatim: true},
		{name: "41030 page", fault: wechattest.Fault{ErrCode: 41030}, status: 400, errcode: 41030, verbatim: true},
		{name: "40165 page path", fault: wechattest.Fault{ErrCode: 40165}, status: 400, errcode: 40165, verbatim: true},
		{name: "85096 scancode_time", fault: wechattest.Fault{ErrCode: 85096}, status: 400, errcode: 85096, verbatim: true},
		{name: "45029 lifetime limit", fault: wechattest.Fault{ErrCode: 45029}, status: 403, errcode: 45029, verbatim: true},
		{name: "45009 daily limit", fault: wechattest.Fault{ErrCode: 45009}, status: 429, errcode: 45009, retryAfter: true, verbatim: true},
		{name: "45011 minute limit", fault: wechattest.Fault{ErrCode: 45011}, status: 429, errcode: 45011, retryAfter: true, verbatim: true},
		{name: "44990 too frequent", fault: wechattest.Fault{ErrCode: 44990}, status: 429, errcode: 44990, retryAfter: true, verbatim: true},
		{name: "-1 busy", fault: wechattest.Fault{ErrCode: -1}, status: 503, errcode: -1, retryAfter: true, verbatim: true},
		{name: "40001 after refresh", fault: wechattest.Fault{ErrCode: 40001}, status: 502, errcode: 40001, verbatim: true},
		{name: "40014 after refresh", fault: wechattest.Fault{ErrCode: 40014}, status: 502, errcode: 40014, verbatim: true},
		{name: "42001 after refresh", fault: wechattest.Fault{ErrCode: 42001}, status: 502, errcode: 42001, verbatim: true},
		{name: "41001", fault: wechattest.Fault{ErrCode: 41001}, status: 502, errcode: 41001, verbatim: true},
		{name: "40164 ip whitelist", fault: wechattest.Fault{ErrCode: 40164}, status: 502, errcode: 40164, verbatim: true},
		{name: "48001 unauthorised", fault: wechattest.Fault{ErrCode: 48001}, status: 502, errcode: 48001, verbatim: true},
		{name: "47001 body", fault: wechattest.Fault{ErrCode: 47001}, status: 502, errcode: 47001, verbatim: true},
		{name: "unknown code", fault: wechattest.Fault{ErrCode: 61234}, status: 502, errcode: 61234, verbatim: true},
		{name: "token 40013", path: wechattest.PathStableToken, fault: wechattest.Fault{ErrCode: 40013}, status: 502, errcode: 40013, generic: true},
		{name: "token 40125", path: wechattest.PathStableToken, fault: wechattest.Fault{ErrCode: 40125}, status: 502, errcode: 40125, generic: true},
		{name: "token 40243", path: wechattest.PathStableToken, fault: wechattest.Fault{ErrCode: 40243}, status: 502, errcode: 40243, generic: true},
		{name: "token endpoint down", path: wechattest.PathStableToken, fault: wechattest.Fault{Reset: true}, status: 502, errcode: 990502},
		{name: "connection reset", fault: wechattest.Fault{Reset: true}, status: 502, errcode: 990502},
		{name: "upstream 5xx page", fault: wechattest.Fault{Status: 502, Body: html, ContentType: "text/html"}, status: 502, errcode: 990502},
		{name: "garbage labelled jpeg", fault: wechattest.Fault{Garbage: true}, status: 502, errcode: 990502},
		{name: "truncated image", fault: wechattest.Fault{Truncate: true}, status: 502, errcode: 990502},
		{name: "4-byte jpeg", fault: wechattest.Fault{Body: []byte{0xff, 0xd8, 0xff, 0xd9}, ContentType: "image/jpeg"}, status: 502, errcode: 990502},
		{name: "png wider than wechat draws", fault: wechattest.Fault{Body: wideImage(t, 1500), ContentType: "image/jpeg"}, status: 502, errcode: 990502},
		{name: "decompression bomb", fault: wechattest.Fault{Body: bombPNG(100000), ContentType: "image/jpeg"}, status: 502, errcode: 990502},
		{name: "timeout", fault: wechattest.Fault{Delay: 3 * time.Second}, status: 504, errcode: 990504},
		{name: "no answer", fault: wechattest.Fault{Hang: true}, status: 504, errcode: 990504},
		{name: "trickle slower than the timeout", fault: wechattest.Fault{Trickle: 5 * time.Millisecond}, status: 504, errcode: 990504},
		{name: "endless reply", fault: wechattest.Fault{Endless: true}, status: 502, errcode: 990502},
		{name: "html 503 page", fault: wechattest.Fault{Status: 503, Body: []byte("<html>503 Service Unavailable</html>"), ContentType: "text/html"}, status: 502, errcode: 990502},
		{name: "token refused", path: wechattest.PathStableToken, fault: wechattest.Fault{ErrCode: 40164, ErrMsg: "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist"}, status: 502, errcode: 40164, generic: true},
	}
	s, fake := qrSite(t, "allow *\ncap 100000\ntimeout 500ms")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.ClearFaults()
			path := tt.path
			if path == "" {
				path = wechattest.PathQRCode
			}
			if path != wechattest.PathQRCode {
				fake.InvalidateTokens() // so that the token endpoint is asked
			}
			fake.Inject(path, tt.fault, 0)
			uri := fmt.Sprintf("/qr?path=pages/status/%d", i)
			resp, body := s.get(uri)
			assertError(t, resp, body, tt.status, tt.errcode)
			if tt.retryAfter != (resp.Header.Get("Retry-After") != "") {
				t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if tt.verbatim && !strings.Contains(string(body), "rid:") {
				t.Errorf("want WeChat's own body, got %s", body)
			}
			if tt.generic && (strings.Contains(string(body), "rid:") || strings.Contains(string(body), "203.0.113.7") || !strings.Contains(string(body), "could not get an access token")) {
				t.Errorf("want a generic message, got %s", body)
			}
			if n := len(cachedFiles(t, s.dir)); n != 0 {
				t.Fatalf("%d cache entries after a failure", n)
			}
			fake.ClearFaults()
			// The master's width: what is checked is the fetch, not a render.
			resp, body = s.getOK(uri + "&width=1280")
			assertImage(t, resp, body, "image/jpeg", 1280)
			waitCached(t, s.dir, 1)
			os.RemoveAll(filepath.Join(s.dir, "wxqrcode"))
		})
	}
	// What the visitor was not told, the operator finds in the log.
	logs, err := os.ReadFile(filepath.Join(logDir, t.Name()+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "invalid ip 203.0.113.7") {
		t.Error("the token endpoint's message is not in the log")
	}
}

// wideImage is a whole PNG w pixels square: more than WeChat draws when w
// is over 1280.
func wideImage(t *testing.T, w int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, w))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bombPNG is a PNG whose header declares n×n pixels and whose data is a
// few bytes: decoding it would allocate n×n×4 bytes.
func bombPNG(n uint32) []byte {
	chunk := func(b []byte, typ string, data []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		body := append([]byte(typ), data...)
		b = append(b, body...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(body))
	}
	hdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, n), n)
	b := chunk([]byte("\x89PNG\r\n\x1a\n"), "IHDR", append(hdr, 8, 6, 0, 0, 0))
	b = chunk(b, "IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	return chunk(b, "IEND", nil)
}

func TestSecretAndTokenNotInResponses(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	var bodies []string
	for _, f := range []wechattest.Fault{{Reset: true}, {ErrCode: 40001}, {Garbage: true}, {Status: 500}} {
		fake.ClearFaults()
		fake.Inject(wechattest.PathQRCode, f, 0)
		resp, body := s.get("/qr?path=a")
		bodies = append(bodies, string(body))
		for k, v := range resp.Header {
			bodies = append(bodies, k+": "+strings.Join(v, ","))
		}
	}
	all := strings.Join(bodies, "\n")
	if len(fake.Tokens()) == 0 {
		t.Fatal("no token was issued")
	}
	for _, secret := range append(fake.Tokens(), testSecret) {
		if strings.Contains(all, secret) {
			t.Fatal("a secret or token reached a response")
		}
	}
}

func TestCorruptEntryRefetched(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000\nmemory_cache off")
	resp, body := s.get("/qr?path=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	waitCached(t, s.dir, 1)
	files := cachedFiles(t, s.dir)
	stored, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], stored[:len(stored)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	resp, body2 := s.get("/qr?path=a")
	assertImage(t, resp, body2, "image/jpeg", 430)
	if !bytes.Equal(body, body2) || fake.CodeCalls() != 2 {
		t.Errorf("want the whole image fetched again (%d code calls)", fake.CodeCalls())
	}
	deadline := time.Now().Add(5 * time.Second)
	for again, _ := os.ReadFile(files[0]); len(again) != len(stored); again, _ = os.ReadFile(files[0]) {
		if time.Now().After(deadline) {
			t.Fatal("the cut entry was not replaced")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCacheDirAndStorageModule(t *testing.T) {
	for _, opt := range []string{"cache_dir %s", "storage file_system {\n\troot %s\n}"} {
		fake := newFake(t)
		dir := t.TempDir()
		s := startSite(t, fake, "", qrBlock(fake, "allow *\ncap 100000\n"+fmt.Sprintf(opt, dir)))
		resp, body := s.get("/qr?path=a")
		assertImage(t, resp, body, "image/jpeg", 430)
		waitCached(t, dir, 1)
		if n := len(cachedFiles(t, s.dir)); n != 0 {
			t.Errorf("%q: %d entries in the default storage, want 0", opt, n)
		}
	}
}

// TestRestartKeepsCache runs the built binary twice on one storage.
func TestRestartKeepsCache(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile(t, port, filepath.Join(dir, "data"), qrBlock(fake, "allow *\ncap 100000"))), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := &site{t: t, url: base}
	var first []byte
	for run := range 2 {
		p := startProcess(t, dir, base+"/", nil, "run", "--config", cfg)
		resp, body := s.get("/qr?path=pages/index/index")
		assertImage(t, resp, body, "image/jpeg", 430)
		if run == 0 {
			first = body
		} else if !bytes.Equal(first, body) {
			t.Error("the image after the restart differs")
		}
		p.stop(t)
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls across a restart, want 1", n)
	}
}

// TestExampleRuns runs the README's command on Caddyfile.example, pointed
// at the fake.
func TestExampleRuns(t *testing.T) {
	fake := newFake(t)
	example, err := filepath.Abs("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"WX_APPID=" + testAppID, "WX_SECRET=" + testSecret, "WX_API_BASE=" + fake.URL,
		"WXQRCODE_ADDR=" + addr, fmt.Sprintf("CADDY_ADMIN=127.0.0.1:%d", freePort(t))}
	dir := t.TempDir()
	startProcess(t, dir, "http://"+addr+"/", env, "run", "--config", example)
	s := &site{t: t, url: "http://" + addr}
	resp, body := s.get("/qr?path=pages/item/item%3Fid%3D42")
	assertImage(t, resp, body, "image/jpeg", 430)
	resp, body = s.get("/poster/A1B2C3?page=" + url.QueryEscape("pages/item/item"))
	assertImage(t, resp, body, "image/png", 280)
	resp, body = s.get("/qr?path=pages/admin/admin")
	assertError(t, resp, body, 403, 990403)
	waitCached(t, filepath.Join(dir, "wxqrcode-data"), 2)
}

func TestRetryAfterValues(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	for _, tc := range []struct {
		code     int
		min, max int
	}{{45011, 60, 60}, {44990, 60, 60}, {-1, 5, 5}, {45009, 1, 86400}} {
		fake.ClearFaults()
		fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: tc.code}, 0)
		resp, _ := s.get("/qr?path=a")
		var n int
		if _, err := fmt.Sscan(resp.Header.Get("Retry-After"), &n); err != nil || n < tc.min || n > tc.max {
			t.Errorf("errcode %d: Retry-After %q, want %d..%d", tc.code, resp.Header.Get("Retry-After"), tc.min, tc.max)
		}
	}
}

// A refused token is replaced once: two code calls and one more token call.
func TestRefusedTokenRetriedOnce(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	resp, body := s.get("/qr?path=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	fake.InvalidateTokens()
	resp, body = s.get("/qr?path=b")
	assertImage(t, resp, body, "image/jpeg", 430)
	if fake.CodeCalls() != 3 || fake.TokenCalls() != 2 {
		t.Errorf("%d code and %d token calls, want 3 and 2", fake.CodeCalls(), fake.TokenCalls())
	}
}

func TestClassicToken(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000\ntoken classic")
	for _, p := range []string{"a", "b"} {
		resp, body := s.get("/qr?path=" + p)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if fake.Calls(wechattest.PathToken) != 1 || fake.Calls(wechattest.PathStableToken) != 0 {
		t.Errorf("classic %d, stable %d token calls; want 1 and 0", fake.Calls(wechattest.PathToken), fake.Calls(wechattest.PathStableToken))
	}
}

// A config reload keeps the token: the new handler asks for none.
func TestReloadKeepsToken(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	resp, body := s.get("/qr?path=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	cfg, err := adapt(caddyfile(t, s.port, s.dir, qrBlock(fake, "allow *\ncap 100000\nwidth 300")))
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	resp, body = s.get("/qr?path=a") // a new width of a code made before
	assertImage(t, resp, body, "image/jpeg", 300)
	resp, body = s.get("/qr?path=b")
	assertImage(t, resp, body, "image/jpeg", 300)
	if fake.TokenCalls() != 1 || fake.CodeCalls() != 2 {
		t.Errorf("%d token and %d code calls across a reload, want 1 and 2", fake.TokenCalls(), fake.CodeCalls())
	}
}

// A client that gives up during a miss does not waste the call.
func TestClientGivesUpCodeStillCached(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Delay: 400 * time.Millisecond}, 1)
	impatient := &http.Client{Timeout: 100 * time.Millisecond}
	if _, err := impatient.Get(s.url + "/qr?path=a"); err == nil {
		t.Fatal("want the impatient client to time out")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(cachedFiles(t, s.dir)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := s.get("/qr?path=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

func TestHeadOnMiss(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	resp, body := s.do(http.MethodHead, "/qr?path=a")
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("HEAD: status %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
	}
	resp, body = s.get("/qr?path=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

func TestAllowForUnlimitedPages(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/p", "api unlimited\nallow pages/item/*\ncap 100000"))
	resp, body := s.get("/p?scene=a&page=pages/item/item")
	assertImage(t, resp, body, "image/jpeg", 430)
	resp, body = s.get("/p?scene=a&page=pages/index/index")
	assertError(t, resp, body, 403, 990403)
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

// Token endpoint faults, for both endpoints, leave no secret or token in
// what the client sees.
func TestTokenFaultsLeakNothing(t *testing.T) {
	for _, mode := range []string{"stable", "classic"} {
		fake := newFake(t)
		s := startSite(t, fake, "", qrBlock(fake, "allow *\ncap 100000\ntoken "+mode))
		path := map[string]string{"stable": wechattest.PathStableToken, "classic": wechattest.PathToken}[mode]
		var seen strings.Builder
		for i, f := range []wechattest.Fault{{Reset: true}, {ErrCode: 40125}, {Status: 500, Body: []byte("oops")}, {Garbage: true}} {
			fake.ClearFaults()
			fake.Inject(path, f, 0)
			resp, body := s.get(fmt.Sprintf("/qr?path=%d", i))
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s fault %d: status %d, want 502", mode, i, resp.StatusCode)
			}
			fmt.Fprintf(&seen, "%s %v\n", body, resp.Header)
		}
		fake.ClearFaults()
		if resp, _ := s.getOK("/qr?path=ok"); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d after the faults cleared", mode, resp.StatusCode)
		}
		for _, secret := range append(fake.Tokens(), testSecret) {
			if strings.Contains(seen.String(), secret) {
				t.Errorf("%s: a secret or token reached a response", mode)
			}
		}
	}
}

// WeChat unreachable: refused connections are a 502 with nothing cached,
// and the codes come once WeChat is back on that address.
func TestConnectionRefused(t *testing.T) {
	fake := newFake(t)
	port := freePort(t)
	s := startSite(t, fake, "", fmt.Sprintf(`wxqrcode /qr {
		appid %s
		secret {env.%s}
		api_base http://127.0.0.1:%d
		allow *
		cap 100000
	}`, testAppID, secretEnv, port))
	resp, body := s.get("/qr?path=pages/refused")
	assertError(t, resp, body, http.StatusBadGateway, 990502)
	if n := len(cachedFiles(t, s.dir)); n != 0 {
		t.Fatalf("%d cache entries after a failure", n)
	}
	target, err := url.Parse(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	back := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	go back.Serve(l)
	t.Cleanup(func() { back.Close() })
	resp, body = s.getOK("/qr?path=pages/refused")
	assertImage(t, resp, body, "image/jpeg", 430)
}
