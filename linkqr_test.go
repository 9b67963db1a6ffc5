package wxqrcode_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/chromedp/chromedp"

	wxqrcode "github.com/wxqrcode/caddy-wxqrcode"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// linkURL is the url template of the link routes here.
const linkURL = "https://shop.example.com/q/item/{query.id}"

// linkBlock is a link route at matcher: no appid, no secret, no WeChat.
func linkBlock(matcher, options string) string {
	return fmt.Sprintf("wxqrcode %s {\n\t\tapi link\n\t\turl %s\n\t\t%s\n\t}\n\t", matcher, linkURL, strings.ReplaceAll(options, "\n", "\n\t\t"))
}

// assertNoWeChat fails if anything was asked of WeChat or stored.
func assertNoWeChat(t *testing.T, s *site) {
	t.Helper()
	if n, m := s.fake.CodeCalls(), s.fake.TokenCalls(); n != 0 || m != 0 {
		t.Errorf("%d code and %d token calls, want none", n, m)
	}
	if files := cachedFiles(t, s.dir); len(files) != 0 {
		t.Errorf("stored %v, want nothing", files)
	}
}

// A link code is the QR code of the url resolved, a 1-bit PNG of exactly
// the width asked, immutable with a strong ETag of its own, drawn once
// and then served from memory; nothing is asked of WeChat or stored.
func TestLinkPNG(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", linkBlock("/link", ""))
	want := "https://shop.example.com/q/item/42"
	etags := map[string]bool{}
	for _, width := range []int{280, 430, 1280} {
		path := fmt.Sprintf("/link?id=42&width=%d", width)
		if width == 430 {
			path = "/link?id=42"
		}
		resp, body := s.get(path)
		assertImage(t, resp, body, "image/png", width)
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("Cache-Control %q", got)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(body))
		if p, ok := cfg.ColorModel.(color.Palette); err != nil || !ok || len(p) != 2 {
			t.Errorf("%dpx: not a 1-bit PNG (%v)", width, err)
		}
		if got, err := wxqrcode.ScanCode(body); got != want {
			t.Errorf("%dpx scans as %q (%v)", width, got, err)
		}
		etag := resp.Header.Get("ETag")
		etags[etag] = true
		again, body2 := s.get(path)
		if again.Header.Get("Cache-Status") != "wxqrcode; hit; detail=memory" || again.Header.Get("ETag") != etag || !bytes.Equal(body, body2) {
			t.Errorf("%dpx asked again: Cache-Status %q, ETag %q, want the same code from memory", width, again.Header.Get("Cache-Status"), again.Header.Get("ETag"))
		}
		notModified, _ := s.get(path, "If-None-Match", etag)
		if notModified.StatusCode != http.StatusNotModified {
			t.Errorf("%dpx with If-None-Match: %d, want 304", width, notModified.StatusCode)
		}
	}
	if len(etags) != 3 {
		t.Errorf("ETags %v, want one for each width", etags)
	}
	resp, body := s.get("/link?id=43")
	if got, _ := wxqrcode.ScanCode(body); resp.StatusCode != http.StatusOK || got != "https://shop.example.com/q/item/43" {
		t.Errorf("another id: %d, scans as %q", resp.StatusCode, got)
	}
	assertNoWeChat(t, s)
}

// With format svg, a link code is a small inert SVG of the size asked,
// in a viewBox of modules; level H makes a denser code that still scans.
func TestLinkSVGAndLevel(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", linkBlock("/svg", "format svg")+linkBlock("/h", "level H"))
	resp, body := s.get("/svg?id=42&width=280")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, want := range []string{`width="280"`, `height="280"`, `viewBox="0 0 37 37"`, `shape-rendering="crispEdges"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the svg has no %s: %s", want, body)
		}
	}
	for _, bad := range []string{"script", "foreignObject", "href", "url(", "<image"} {
		if bytes.Contains(body, []byte(bad)) {
			t.Errorf("the svg holds %s", bad)
		}
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" || !strings.HasPrefix(resp.Header.Get("ETag"), `"`) {
		t.Errorf("Cache-Control %q, ETag %q", got, resp.Header.Get("ETag"))
	}
	// The same code at the same width, in another style: drawn anew.
	resp, body = s.get("/h?id=42&width=280")
	assertImage(t, resp, body, "image/png", 280)
	if got, err := wxqrcode.ScanCode(body); got != "https://shop.example.com/q/item/42" {
		t.Errorf("level H scans as %q (%v)", got, err)
	}
	assertNoWeChat(t, s)
}

// A url template that reads a header makes the code private: a shared
// cache must not serve one visitor's code to another.
func TestLinkPrivateBeyondURL(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", "wxqrcode /me {\n\t\tapi link\n\t\turl https://shop.example.com/u/{header.X-User}\n\t}\n\t")
	resp, body := s.get("/me", "X-User", "alice")
	assertImage(t, resp, body, "image/png", 430)
	if got := resp.Header.Get("Cache-Control"); got != "private, max-age=31536000, immutable" {
		t.Errorf("Cache-Control %q, want private", got)
	}
	if got, _ := wxqrcode.ScanCode(body); got != "https://shop.example.com/u/alice" {
		t.Errorf("scans as %q", got)
	}
}

// A url that is too long, or holds a space, a control character or a
// fragment, is a 400 40097, and a bad width too; nothing is drawn for
// them.
func TestLinkBadURL(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", linkBlock("/link", ""))
	for _, path := range []string{
		"/link?id=" + strings.Repeat("a", 1024-len("https://shop.example.com/q/item/")+1),
		"/link?id=a%20b",
		"/link?id=a%01b",
		"/link?id=a%7fb",
		"/link?id=a%23frag",
		"/link?id=42&width=100",
		"/link?id=42&id=43",
	} {
		resp, body := s.get(path)
		assertError(t, resp, body, http.StatusBadRequest, 40097)
	}
	resp, body := s.get("/link?id=" + strings.Repeat("a", 1024-len("https://shop.example.com/q/item/")))
	assertImage(t, resp, body, "image/png", 430)
	assertNoWeChat(t, s)
}

// A url template that lets the request choose the scheme or the host is
// refused at load, naming its line and saying why; a link route needs no
// appid or secret, and format and level belong to the codes drawn here.
func TestLinkRefusedAtLoad(t *testing.T) {
	const head = "wxqrcode {\n\tapi link\n" // lines 2-3 of the site
	tests := []struct {
		name, block string
		line        int
		msg         string
	}{
		{"host from the query", head + "\turl https://{query.host}/q\n}", 4, "lets the request choose the host"},
		{"host extended", head + "\turl https://shop.example.com{query.p}\n}", 4, "lets the request choose the host"},
		{"port from the query", head + "\turl https://shop.example.com:{query.port}/q\n}", 4, "lets the request choose the host"},
		{"whole url", head + "\turl {query.url}\n}", 4, "does not start with http:// or https://"},
		{"scheme from the query", head + "\turl {query.s}://shop.example.com/\n}", 4, "does not start with http:// or https://"},
		{"other scheme", head + "\turl ftp://shop.example.com/\n}", 4, "does not start with http:// or https://"},
		{"userinfo", head + "\turl https://me@shop.example.com/\n}", 4, "has no valid host"},
		{"fragment", head + "\turl https://shop.example.com/q#{query.id}\n}", 4, "has a fragment"},
		{"no url", head + "\tformat svg\n}", 2, "api link needs url"},
		{"bad format", head + "\turl https://a.example/\n\tformat gif\n}", 5, `format must be png or svg, not "gif"`},
		{"bad level", head + "\turl https://a.example/\n\tlevel X\n}", 5, `level must be L, M, Q or H, not "X"`},
		{"format of wechat's codes", "wxqrcode {\n\tappid wx1\n\tsecret s\n\tallow pages/a\n\tformat svg\n}", 6, "format applies to the codes drawn here"},
		{"url elsewhere", "wxqrcode {\n\tappid wx1\n\tsecret s\n\tapi oa_permanent\n\tscene a\n\turl https://a.example/\n}", 7, "url applies to api link only"},
		{"cap", head + "\turl https://a.example/{query.id}\n\tcap 100\n}", 5, "cap does not apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlerJSON(t, tt.block)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), fmt.Sprintf("Caddyfile:%d", tt.line)) {
				t.Errorf("error %q, want %q at Caddyfile:%d", err, tt.msg, tt.line)
			}
		})
	}
	_, err := handlerJSON(t, head+"\turl https://{query.host}/q\n}")
	if err == nil || !strings.Contains(err.Error(), "a stranger could draw codes for any site under your name") {
		t.Errorf("error %v, want it to say why", err)
	}
	// The same refusal for a config loaded as JSON.
	cfg := []byte(`{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"wxqrcode","api":"link","url":"https://{http.request.uri.query.host}/"}]}]}}}}}`)
	if err := caddy.Validate(configOf(t, cfg)); err == nil || !strings.Contains(err.Error(), "lets the request choose the host") {
		t.Errorf("JSON config: %v, want the host refused", err)
	}
}

// linkPage shows link codes drawn as SVG at 280, 430 and 1280 pixels and
// an official account's code in SVG.
const linkPage = `<img id="w280" src="%[1]s/svg?id=42&width=280" onload="done(this, true)" onerror="done(this, false)">
<img id="w430" src="%[1]s/svg?id=42" onload="done(this, true)" onerror="done(this, false)">
<img id="w1280" src="%[1]s/svg?id=42&width=1280" onload="done(this, true)" onerror="done(this, false)">
<img id="oa" src="%[1]s/oa?scene=door-1&width=280" onload="done(this, true)" onerror="done(this, false)">
`

// The SVG codes as a browser draws them scan: link codes at every width,
// and an official account's code in SVG holds WeChat's url.
func TestBrowserLinkSVG(t *testing.T) {
	ctx := newBrowser(t)
	fake := newFake(t)
	s := startSite(t, fake, "", linkBlock("/svg", "format svg")+wxBlock(fake, "/oa", "api oa_permanent\nformat svg\nlevel Q\ncap 10"))
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, imgPage("link codes", fmt.Sprintf(linkPage, s.url)))
	}))
	t.Cleanup(page.Close)
	results := loadPage(t, ctx, chromedp.Navigate(page.URL), 4)
	want := map[string]struct {
		width   int
		content string
	}{
		"w280":  {280, "https://shop.example.com/q/item/42"},
		"w430":  {430, "https://shop.example.com/q/item/42"},
		"w1280": {1280, "https://shop.example.com/q/item/42"},
		"oa":    {280, fake.OAURL("door-1", true)},
	}
	for id, w := range want {
		if got := results[id]; !got.OK || got.Width != w.width || got.Height != w.width {
			t.Errorf("%s: %+v, want loaded at %dpx", id, got, w.width)
			continue
		}
		step, cancel := context.WithTimeout(ctx, 20*time.Second)
		shot, err := chromedp.Run(step, chromedp.Screenshot(chromedp.ID(id)))
		cancel()
		if err != nil {
			t.Fatalf("%s: screenshot: %v", id, err)
		}
		img, _, err := image.Decode(bytes.NewReader(shot))
		if err != nil || img.Bounds().Dx() != w.width {
			t.Errorf("%s: screenshot %v (%v), want %dpx", id, img.Bounds(), err, w.width)
		}
		if got, err := wxqrcode.ScanCode(shot); got != w.content {
			t.Errorf("%s: the drawn svg scans as %q (%v), want %q", id, got, err, w.content)
		}
	}
	if n := fake.Calls(wechattest.PathOACode); n != 1 {
		t.Errorf("%d calls for the official account's code, want 1", n)
	}
}

// Routes drawing one official account's code in different styles share
// its one call and master, and each serves its own style, at the
// master's width too.
func TestOADrawStyles(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/svg", "api oa_permanent\nformat svg\ncap 10")+
		wxBlock(fake, "/h", "api oa_permanent\nlevel H\ncap 10")+
		wxBlock(fake, "/png", "api oa_permanent\ncap 10"))
	resp, body := s.get("/png?scene=door-1&width=1280")
	plain := resp.Header.Get("ETag")
	assertOACode(t, resp, body, 1280, fake.OAURL("door-1", true))
	resp, body = s.get("/h?scene=door-1&width=1280")
	assertOACode(t, resp, body, 1280, fake.OAURL("door-1", true))
	if resp.Header.Get("ETag") == plain {
		t.Error("level H served the master drawn at level M")
	}
	for _, width := range []int{430, 1280} {
		resp, body = s.get(fmt.Sprintf("/svg?scene=door-1&width=%d", width))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" ||
			!bytes.Contains(body, fmt.Appendf(nil, `width="%d"`, width)) {
			t.Errorf("svg at %dpx: %d %q %.100s", width, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if n := fake.Calls(wechattest.PathOACode); n != 1 {
		t.Errorf("%d calls, want one for the code whatever its style", n)
	}
}

// A link route may require signed URLs and an allow list: the signature
// covers the url resolved, and allow globs match it.
func TestLinkSignedAndAllowed(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", linkBlock("/link", "sign_key "+signKey+"\nallow https://shop.example.com/q/item/1*"))
	sign := func(u string) string {
		return hmacHex(signKey, url.Values{"api": {"link"}, "appid": {""}, "url": {u}}.Encode())
	}
	resp, body := s.get("/link?id=12")
	assertError(t, resp, body, http.StatusForbidden, 990411)
	resp, body = s.get("/link?id=12&sig=" + sign("https://shop.example.com/q/item/13"))
	assertError(t, resp, body, http.StatusForbidden, 990412)
	resp, body = s.get("/link?id=12&sig=" + sign("https://shop.example.com/q/item/12"))
	assertImage(t, resp, body, "image/png", 430)
	resp, body = s.get("/link?id=22&sig=" + sign("https://shop.example.com/q/item/22"))
	assertError(t, resp, body, http.StatusForbidden, 990403)
	assertNoWeChat(t, s)
}
