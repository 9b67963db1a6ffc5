package wxqrcode_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// requireBrowserEnv makes a missing Chromium a failure instead of a skip;
// .ci/run sets it after installing Debian's chromium.
const requireBrowserEnv = "WXQRCODE_REQUIRE_BROWSER"

// screenshotEnv names a folder for the browser test's screenshots. They are
// taken on failure, into the system's temporary folder unless this is set,
// and on success too when it is set.
const screenshotEnv = "WXQRCODE_SCREENSHOTS"

// imgPage is a web page of images, each of which reports how it ended
// into window.results, keyed by its id.
func imgPage(title, imgs string) string {
	return `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>` + title + `</title>
<script>
window.results = {};
function done(img, ok) {
	window.results[img.id] = {ok: ok, width: img.naturalWidth, height: img.naturalHeight};
}
</script>
</head>
<body>
` + imgs + `</body>
</html>
`
}

// browserPage is the web page of TestBrowser: each <img> reports how it
// ended into window.results, keyed by its id.
var browserPage = imgPage("codes", `<img id="qrcode" src="/qr?path=pages/item/item%3Fid%3D42&width=280" onload="done(this, true)" onerror="done(this, false)">
<img id="hyaline" src="/wxa?path=pages/item/item&hyaline=true&width=640" onload="done(this, true)" onerror="done(this, false)">
<img id="poster" src="/poster/id=42" onload="done(this, true)" onerror="done(this, false)">
<img id="unpublished" src="/poster/id=43?page=pages/new/new" onload="done(this, true)" onerror="done(this, false)">
<img id="forbidden" src="/qr?path=admin/index" onload="done(this, true)" onerror="done(this, false)">
`)

// canvasPage draws codes from another origin on a canvas, as a poster
// generator does, and exports it; %[1]s is the Caddy's origin.
const canvasPage = `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>poster</title>
<script>
window.results = {};
function draw(img) {
	try {
		const c = document.createElement("canvas");
		c.width = img.naturalWidth;
		c.height = img.naturalHeight;
		const g = c.getContext("2d");
		g.drawImage(img, 0, 0);
		const px = g.getImageData(0, 0, c.width, c.height).data;
		let dark = 0;
		for (let i = 0; i < px.length; i += 4) {
			if (px[i + 3] > 0 && px[i] < 128) dark++;
		}
		c.toDataURL("image/png");
		window.results[img.id] = {ok: true, width: c.width, height: c.height, dark: dark};
	} catch (e) {
		window.results[img.id] = {ok: false, error: e.name};
	}
}
function failed(img) {
	window.results[img.id] = {ok: false, error: "load"};
}
</script>
</head>
<body>
<img id="cors" crossorigin="anonymous" src="%[1]s/poster/id=44" onload="draw(this)" onerror="failed(this)">
<img id="nocors" crossorigin="anonymous" src="%[1]s/qr?path=pages/index/index" onload="draw(this)" onerror="failed(this)">
</body>
</html>
`

// imgResult is what a page recorded for one <img>.
type imgResult struct {
	OK     bool   `json:"ok"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Dark   int    `json:"dark"`  // dark pixels drawn on a canvas
	Error  string `json:"error"` // why a canvas draw failed
}

// exchange is one response the browser got for an image, as DevTools
// reports it.
type exchange struct {
	status    int64
	mimeType  string
	fromCache bool   // from the browser's memory or disk cache
	corsError string // why CORS blocked it, if it did
}

// netLog collects the browser's responses by URL path and query.
type netLog struct {
	mu        sync.Mutex
	urls      map[network.RequestID]string
	exchanges map[string][]exchange
}

func newNetLog() *netLog {
	return &netLog{urls: map[network.RequestID]string{}, exchanges: map[string][]exchange{}}
}

func (l *netLog) listen(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		l.urls[ev.RequestID] = requestURI(ev.Request.URL)
	case *network.EventRequestServedFromCache:
		uri := l.urls[ev.RequestID]
		l.exchanges[uri] = append(l.exchanges[uri], exchange{status: 200, fromCache: true})
	case *network.EventLoadingFailed:
		if ev.CorsErrorStatus != nil {
			uri := l.urls[ev.RequestID]
			l.exchanges[uri] = append(l.exchanges[uri], exchange{corsError: string(ev.CorsErrorStatus.CorsError)})
		}
	case *network.EventResponseReceived:
		uri := l.urls[ev.RequestID]
		fromCache := ev.Response.FromDiskCache || ev.Response.FromPrefetchCache
		if n := len(l.exchanges[uri]); n > 0 && l.exchanges[uri][n-1].fromCache {
			return // already counted by EventRequestServedFromCache
		}
		l.exchanges[uri] = append(l.exchanges[uri], exchange{status: ev.Response.Status, mimeType: ev.Response.MimeType, fromCache: fromCache})
	}
}

// take returns the responses seen so far and starts a new log.
func (l *netLog) take() map[string][]exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.exchanges
	l.exchanges = map[string][]exchange{}
	return got
}

func requestURI(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.IndexByte(raw[i+3:], '/'); j >= 0 {
			return raw[i+3+j:]
		}
	}
	return raw
}

// findChromium returns the browser's path, or skips the test when there is
// none and requireBrowserEnv is unset.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv(requireBrowserEnv) != "" {
		t.Fatalf("no chromium on PATH and %s is set: apt-get install chromium", requireBrowserEnv)
	}
	t.Skipf("no chromium on PATH (apt-get install chromium); set %s to make this a failure", requireBrowserEnv)
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile and the
// extra flags, and takes a screenshot of the page when the test fails.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(findChromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		// Its crash reports and dconf cache go to HOME and XDG_*.
		chromedp.Env(ownHome(t.TempDir())...),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	opts = append(opts, extra...)
	// No deadline here: each step has its own, so that a step that times
	// out leaves the browser up for the screenshot.
	ctx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(ctx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first action starts the browser, which lives as long as the
	// context it is given: this one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		dir := os.Getenv(screenshotEnv)
		if !t.Failed() && dir == "" {
			return
		}
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "wxqrcode-screenshots")
		}
		shot, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(shot, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
		err = os.MkdirAll(dir, 0o755)
		if err == nil {
			err = os.WriteFile(name, png, 0o644)
		}
		if err != nil {
			t.Logf("screenshot not saved: %v", err)
			return
		}
		t.Logf("screenshot: %s", name)
	})
	return ctx
}

// loadPage runs the navigation and waits for every <img> to report.
func loadPage(t *testing.T, ctx context.Context, navigate chromedp.Action[chromedp.Void], images int) map[string]imgResult {
	t.Helper()
	// Navigating waits for the load event, which waits for every image.
	step, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	all := fmt.Sprintf("Object.keys(window.results || {}).length === %d", images)
	if err := chromedp.Do(step, navigate, chromedp.Poll[chromedp.Void](all)); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	results, err := chromedp.Run(step, chromedp.Evaluate[map[string]imgResult]("window.results"))
	if err != nil {
		t.Fatalf("reading the page's results: %v", err)
	}
	return results
}

// The codes as a web page uses them: headless Chromium loads a page from
// the same Caddy, with <img> tags pointing at the module.
func TestBrowser(t *testing.T) {
	ctx := newBrowser(t)
	fake := newFake(t)
	web := t.TempDir()
	if err := os.WriteFile(filepath.Join(web, "index.html"), []byte(browserPage), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		// A site that wants browsers to revalidate says so with header.
		"header /wxa Cache-Control no-cache\n\t"+
		wxBlock(fake, "/wxa", "api wxacode\nis_hyaline {query.hyaline}\nallow *\ncap 100000")+
		wxBlock(fake, "/poster/*", "api unlimited\nscene {path.1}\ncap 100000")+
		"root * "+web+"\n\tfile_server\n")

	log := newNetLog()
	if err := chromedp.Listen(ctx, log.listen); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}

	const (
		qrcode      = "/qr?path=pages/item/item%3Fid%3D42&width=280"
		hyaline     = "/wxa?path=pages/item/item&hyaline=true&width=640"
		poster      = "/poster/id=42"
		unpublished = "/poster/id=43?page=pages/new/new"
		forbidden   = "/qr?path=admin/index"
	)
	wantWidth := map[string]int{"qrcode": 280, "hyaline": 640, "poster": 430}
	checkPage := func(t *testing.T, results map[string]imgResult) {
		t.Helper()
		for id, want := range wantWidth {
			if got := results[id]; !got.OK || got.Width != want || got.Height != want {
				t.Errorf("<img id=%s>: %+v, want loaded at %dx%d", id, got, want, want)
			}
		}
		for _, id := range []string{"unpublished", "forbidden"} {
			if got := results[id]; got.OK {
				t.Errorf("<img id=%s> loaded, want onerror", id)
			}
		}
	}
	// status is the one response the browser got for uri, from the network.
	status := func(t *testing.T, seen map[string][]exchange, uri string) exchange {
		t.Helper()
		if len(seen[uri]) != 1 {
			t.Fatalf("%s: responses %+v, want one", uri, seen[uri])
		}
		return seen[uri][0]
	}

	t.Run("first load", func(t *testing.T) {
		checkPage(t, loadPage(t, ctx, chromedp.Navigate(s.url+"/"), 5))
		seen := log.take()
		t.Logf("responses: %+v", seen)
		for uri, want := range map[string]exchange{
			qrcode:      {status: 200, mimeType: "image/jpeg"},
			hyaline:     {status: 200, mimeType: "image/png"}, // WeChat labels it image/jpeg
			poster:      {status: 200, mimeType: "image/jpeg"},
			unpublished: {status: 400, mimeType: "application/json"}, // WeChat's 41030
			forbidden:   {status: 403, mimeType: "application/json"},
		} {
			if got := status(t, seen, uri); got != want {
				t.Errorf("%s: got %+v, want %+v", uri, got, want)
			}
		}
		// The forbidden code is refused before any call.
		for path, want := range map[string]int{wechattest.PathQRCode: 1, wechattest.PathWxaCode: 1, wechattest.PathUnlimited: 2} {
			if got := fake.Calls(path); got != want {
				t.Errorf("%d calls to %s, want %d", got, path, want)
			}
		}
	})
	waitCached(t, s.dir, 3)

	t.Run("reload", func(t *testing.T) {
		checkPage(t, loadPage(t, ctx, chromedp.Reload(), 5))
		seen := log.take()
		t.Logf("responses: %+v", seen)
		// immutable codes come from the browser's cache, or not over the
		// network at all; the no-cache route is revalidated with a 304.
		for _, uri := range []string{qrcode, poster} {
			for _, got := range seen[uri] {
				if !got.fromCache {
					t.Errorf("%s on reload: %+v, want the browser's cache", uri, got)
				}
			}
		}
		if got := status(t, seen, hyaline); got.status != http.StatusNotModified || got.fromCache {
			t.Errorf("%s on reload: %+v, want a 304 revalidation", hyaline, got)
		}
		// Errors are never cached: the unpublished page is asked again.
		if got := status(t, seen, unpublished); got.status != 400 || got.fromCache {
			t.Errorf("%s on reload: %+v, want a new 400", unpublished, got)
		}
		for path, want := range map[string]int{wechattest.PathQRCode: 1, wechattest.PathWxaCode: 1, wechattest.PathUnlimited: 3} {
			if got := fake.Calls(path); got != want {
				t.Errorf("%d calls to %s after the reload, want %d", got, path, want)
			}
		}
	})

	t.Run("hard reload", func(t *testing.T) {
		// Bypassing its cache, the browser gets each code again from
		// Caddy's, still with no call to WeChat.
		if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
			t.Fatal(err)
		}
		checkPage(t, loadPage(t, ctx, chromedp.Reload(), 5))
		seen := log.take()
		t.Logf("responses: %+v", seen)
		for _, uri := range []string{qrcode, hyaline, poster} {
			if got := status(t, seen, uri); got.status != 200 || got.fromCache {
				t.Errorf("%s on hard reload: %+v, want a 200 from Caddy", uri, got)
			}
		}
		for path, want := range map[string]int{wechattest.PathQRCode: 1, wechattest.PathWxaCode: 1, wechattest.PathUnlimited: 4} {
			if got := fake.Calls(path); got != want {
				t.Errorf("%d calls to %s after the hard reload, want %d", got, path, want)
			}
		}
	})
}

// A poster generator on another site draws the codes on a canvas and
// exports it: that needs CORS, which a route gets with the header
// directive, as the README says.
func TestBrowserCanvas(t *testing.T) {
	ctx := newBrowser(t)
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/*\ncap 100000")+
		"header /poster/* Access-Control-Allow-Origin *\n\t"+
		wxBlock(fake, "/poster/*", "api unlimited\nscene {path.1}\ncap 100000"))
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, canvasPage, s.url)
	}))
	t.Cleanup(other.Close)

	log := newNetLog()
	if err := chromedp.Listen(ctx, log.listen); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	results := loadPage(t, ctx, chromedp.Navigate(other.URL), 2)
	if got := results["cors"]; !got.OK || got.Width != 430 || got.Height != 430 || got.Dark == 0 {
		t.Errorf("code with CORS on a canvas: %+v, want drawn and exported at 430x430 with dark modules", got)
	}
	// Without Access-Control-Allow-Origin, a crossorigin image does not
	// load, although Caddy answered with the code.
	if got := results["nocors"]; got.OK || got.Error != "load" {
		t.Errorf("code without CORS: %+v, want a failed load", got)
	}
	seen := log.take()
	t.Logf("responses: %+v", seen)
	if n := fake.Calls(wechattest.PathQRCode); n != 1 {
		t.Errorf("%d calls for the code without CORS, want 1: Caddy made and sent it", n)
	}
	if got := seen["/qr?path=pages/index/index"]; len(got) != 1 || got[0].corsError != "MissingAllowOriginHeader" {
		t.Errorf("the code without CORS: %+v, want one blocked for a missing Access-Control-Allow-Origin", got)
	}
}

// fallbackPage has a code that loads and two that cannot be made.
var fallbackPage = imgPage("fallback", `<img id="code" src="/qr?path=pages/item/item%3Fid%3D42" onload="done(this, true)" onerror="done(this, false)">
<img id="forbidden" src="/qr?path=admin/index" onload="done(this, true)" onerror="done(this, false)">
<img id="refused" src="/qr?path=pages/index/index%3Fgone%3D1" onload="done(this, true)" onerror="done(this, false)">
`)

// examples/fallback: with errors caddy and handle_errors, an <img> for a
// code that cannot be made shows the placeholder, not a broken image,
// and the failure's status still reaches the browser.
func TestBrowserFallback(t *testing.T) {
	ctx := newBrowser(t)
	fake := newFake(t)
	web := t.TempDir()
	if err := os.WriteFile(filepath.Join(web, "index.html"), []byte(fallbackPage), 0o644); err != nil {
		t.Fatal(err)
	}
	placeholders, err := filepath.Abs(filepath.Join("examples", "fallback"))
	if err != nil {
		t.Fatal(err)
	}
	// As examples/fallback/Caddyfile, on the fake.
	s := startSite(t, fake, "", qrBlock(fake, "allow pages/index/index* pages/item/item?id=*\ncap 20000\nerrors caddy")+
		"root * "+web+"\n\tfile_server\n\t"+
		`handle_errors {
		@code path /qr
		handle @code {
			rewrite * /placeholder.png
			file_server {
				root `+placeholders+`
			}
		}
		respond "{err.status_code} {err.message}"
	}
	`)
	// The good code is made now, so that the one refusal below meets the
	// other code, whichever the browser asks for first.
	resp, body := s.get("/qr?path=pages/item/item%3Fid%3D42")
	assertImage(t, resp, body, "image/jpeg", 430)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: 41030}, 1)

	log := newNetLog()
	if err := chromedp.Listen(ctx, log.listen); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	results := loadPage(t, ctx, chromedp.Navigate(s.url+"/"), 3)
	// The placeholder is 256 pixels square; a code here, 430.
	for id, want := range map[string]int{"code": 430, "forbidden": 256, "refused": 256} {
		if got := results[id]; !got.OK || got.Width != want || got.Height != want {
			t.Errorf("<img id=%s>: %+v, want loaded at %dx%d", id, got, want, want)
		}
	}
	seen := log.take()
	t.Logf("responses: %+v", seen)
	for uri, want := range map[string]exchange{
		"/qr?path=pages/item/item%3Fid%3D42":    {status: 200, mimeType: "image/jpeg"},
		"/qr?path=admin/index":                  {status: 403, mimeType: "image/png"},
		"/qr?path=pages/index/index%3Fgone%3D1": {status: 400, mimeType: "image/png"}, // WeChat's 41030
	} {
		if got := seen[uri]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %+v, want one %+v", uri, got, want)
		}
	}
}

// A link route in a browser: the redirect lands on the URL Link, the page
// reply opens it by itself, and a scheme's page shows the button to tap.
// wxaurl.cn is this test's TLS server, by Chromium's resolver rules.
func TestBrowserLinks(t *testing.T) {
	wxaurl := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "opened %s", r.URL.Path)
	}))
	t.Cleanup(wxaurl.Close)
	ctx := newBrowser(t,
		chromedp.Flag("host-resolver-rules", "MAP wxaurl.cn:443 "+wxaurl.Listener.Addr().String()),
		chromedp.Flag("ignore-certificate-errors", true))
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/go", "api urllink\npath pages/item/item\nquery id=42")+
		wxBlock(fake, "/tap", "api urllink\nreply page\npath pages/item/item\nquery id=43")+
		wxBlock(fake, "/scheme", "api scheme\nreply page\npath pages/item/item\nquery id=44"))
	step, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	if err := chromedp.Do(step, chromedp.Navigate(s.url+"/go")); err != nil {
		t.Fatalf("following the redirect: %v", err)
	}
	href, err := chromedp.Run(step, chromedp.Evaluate[string]("location.href"))
	resp, _ := s.link("/go")
	if err != nil || href != resp.Header.Get("Location") || !strings.HasPrefix(href, "https://wxaurl.cn/") {
		t.Errorf("the redirect landed on %q (%v), want the link %q", href, err, resp.Header.Get("Location"))
	}

	if err := chromedp.Do(step, chromedp.Navigate(s.url+"/tap"), chromedp.Poll[chromedp.Void]("location.host === 'wxaurl.cn'")); err != nil {
		t.Fatalf("the page reply did not open the link: %v", err)
	}
	href, err = chromedp.Run(step, chromedp.Evaluate[string]("location.href"))
	resp, body := s.link("/tap")
	if want := linkOf(t, resp, body, "page", "url_link"); err != nil || href != want {
		t.Errorf("the page opened %q (%v), want %q", href, err, want)
	}

	if err := chromedp.Do(step, chromedp.Navigate(s.url+"/scheme")); err != nil {
		t.Fatalf("loading the scheme's page: %v", err)
	}
	button, err := chromedp.Run(step, chromedp.Evaluate[string](
		"(b => b && b.offsetWidth > 0 ? b.getAttribute('href') : '')(document.getElementById('open'))"))
	if err != nil || !strings.HasPrefix(button, "weixin://dl/business/?t=") {
		t.Errorf("the scheme's page shows %q (%v), want a button to weixin://dl/business/?t=...", button, err)
	}
	if n := fake.Calls(wechattest.PathURLLink) + fake.Calls(wechattest.PathScheme); n != 3 {
		t.Errorf("%d link calls, want 3: one per route", n)
	}
}
