package wxqrcode_test

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wxqrcode "github.com/wxqrcode/caddy-wxqrcode"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// skewClock moves the clock of the site's running handlers by the
// returned offset, for the rest of the test.
func skewClock(t *testing.T, s *site) *atomic.Int64 {
	var skew atomic.Int64
	restore := wxqrcode.SetClock(s.fake.URL, func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	t.Cleanup(restore)
	return &skew
}

// maxAge reads Cache-Control's max-age of a temporary code, which is
// never immutable.
func maxAge(t *testing.T, resp *http.Response) time.Duration {
	t.Helper()
	cc := resp.Header.Get("Cache-Control")
	age, ok := strings.CutPrefix(cc, "public, max-age=")
	n, err := strconv.Atoi(age)
	if !ok || err != nil || strings.Contains(cc, "immutable") {
		t.Fatalf("Cache-Control %q, want public, max-age=<seconds>", cc)
	}
	return time.Duration(n) * time.Second
}

// A temporary code is the QR code of the url WeChat issued for its scene,
// kept for no longer than it lives: a second request makes no call, one
// past the renewal makes the code anew, and browsers are told to keep it
// no longer than that. With the memory cache and without it, so that both
// the memory and the storage refuse a code due for renewal.
func TestOATemporary(t *testing.T) {
	for name, mem := range map[string]string{"memory": "", "storage": "memory_cache off"} {
		t.Run(name, func(t *testing.T) {
			fake := newFake(t)
			s := startSite(t, fake, "", wxBlock(fake, "/oa", "api oa_temporary\nexpire 60s\ncap 100 per 1m\n"+mem))
			skew := skewClock(t, s)
			calls := func() int { return fake.Calls(wechattest.PathOACode) }

			start := time.Now()
			resp, body := s.get("/oa?scene=login-42")
			assertOACode(t, resp, body, 430, fake.OAURL("login-42", false))
			// 60 s, renewed 6 s early.
			if age := maxAge(t, resp); age <= 0 || age > 54*time.Second {
				t.Errorf("max-age %s, want at most the 54 s left before renewal", age)
			}
			expires, err := http.ParseTime(resp.Header.Get("Expires"))
			if err != nil || expires.Before(start.Add(50*time.Second).Truncate(time.Second)) || expires.After(time.Now().Add(54*time.Second)) {
				t.Errorf("Expires %q (%v), want about 54 s from now", resp.Header.Get("Expires"), err)
			}
			if calls() != 1 {
				t.Fatalf("%d calls for one code", calls())
			}
			waitCached(t, s.dir, 1)
			resp, body = s.get("/oa?scene=login-42&width=280")
			assertOACode(t, resp, body, 280, fake.OAURL("login-42", false))
			if calls() != 1 {
				t.Errorf("a second request made a call: %d in all", calls())
			}

			// 55 s later the code is due for renewal.
			skew.Store(int64(55 * time.Second))
			resp, body = s.get("/oa?scene=login-42")
			assertOACode(t, resp, body, 430, fake.OAURL("login-42", false))
			if calls() != 2 {
				t.Errorf("%d calls, want the code made anew once past its renewal", calls())
			}
			if age := maxAge(t, resp); age <= 0 || age > 54*time.Second {
				t.Errorf("renewed code: max-age %s, want at most 54 s", age)
			}
			waitCached(t, s.dir, 1)
			resp, body = s.get("/oa?scene=login-42&width=777")
			assertOACode(t, resp, body, 777, fake.OAURL("login-42", false))
			if calls() != 2 {
				t.Errorf("the renewed code was not kept: %d calls", calls())
			}
		})
	}
}

// assertOACode checks an official account's code: a PNG exactly width
// wide that scans to the url WeChat issued.
func assertOACode(t *testing.T, resp *http.Response, body []byte, width int, url string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	if url == "" {
		t.Fatal("WeChat issued no live code")
	}
	if got := resp.Header.Get("Content-Type"); got != "image/png" {
		t.Errorf("Content-Type %q", got)
	}
	if etag := resp.Header.Get("ETag"); !strings.HasPrefix(etag, `"`) {
		t.Errorf("want a strong ETag, got %q", etag)
	}
	got, err := wxqrcode.ScanOACode(body)
	if got != url {
		t.Errorf("%dpx scans as %q (%v), want %q", width, got, err, url)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(body)); err != nil || cfg.Width != width || cfg.Height != width {
		t.Errorf("decoded %dx%d (%v), want %dpx square", cfg.Width, cfg.Height, err, width)
	}
}

// A permanent code is immutable, counted among the account's permanent
// codes once and in the metrics, and every width of it scans; allow
// matches the scene.
func TestOAPermanent(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", "metrics /metrics\n\t"+wxBlock(fake, "/oa", "api oa_permanent\nallow login-*\ncap 100000"))
	metricsBefore, _ := scrape(t, s)
	before := fake.Calls(wechattest.PathOACode)
	etags := map[string]bool{}
	for _, width := range []int{280, 430, 777, 1280} {
		resp, body := s.get("/oa?scene=login-7&width=" + strconv.Itoa(width))
		assertOACode(t, resp, body, width, fake.OAURL("login-7", true))
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("Cache-Control %q, want immutable", got)
		}
		if got := resp.Header.Get("Expires"); got != "" {
			t.Errorf("Expires %q on a permanent code", got)
		}
		etags[resp.Header.Get("ETag")] = true
	}
	if len(etags) != 4 {
		t.Errorf("%d ETags for four widths", len(etags))
	}
	if got := fake.Calls(wechattest.PathOACode) - before; got != 1 {
		t.Errorf("%d calls for four widths of one code, want 1", got)
	}
	if n := fake.PermanentCodes(); n != 1 {
		t.Errorf("%d permanent codes issued, want 1", n)
	}
	metricsAfter, _ := scrape(t, s)
	for _, name := range []string{`caddy_wxqrcode_codes_generated_total{api="oa_permanent"}`, `caddy_wxqrcode_upstream_calls_total{api="oa",errcode="0"}`} {
		if got := metricsAfter[name] - metricsBefore[name]; got != 1 {
			t.Errorf("%s went up by %v, want 1", name, got)
		}
	}
	resp, body := s.get("/oa?scene=other")
	assertError(t, resp, body, http.StatusForbidden, 990403)
	if got := fake.Calls(wechattest.PathOACode) - before; got != 1 {
		t.Errorf("a scene outside allow made a call")
	}
}

// Scenes WeChat would refuse spend no call; WeChat's refusals of the
// action pass through as 400, a reply without a url is a 502, and none
// of them is cached.
func TestOARefusals(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/oa", "api oa_temporary\ncap 100 per 1m"))
	for _, scene := range []string{"", strings.Repeat("a", 65)} {
		resp, body := s.get("/oa?scene=" + url.QueryEscape(scene))
		assertError(t, resp, body, http.StatusBadRequest, 40053)
	}
	if fake.CodeCalls() != 0 || fake.TokenCalls() != 0 {
		t.Errorf("bad scenes made %d code and %d token calls, want none", fake.CodeCalls(), fake.TokenCalls())
	}
	// 64 characters, some of them not ASCII, are fine.
	long := strings.Repeat("码", 64)
	resp, body := s.get("/oa?scene=" + url.QueryEscape(long))
	assertOACode(t, resp, body, 430, fake.OAURL(long, false))

	faults := []struct {
		name           string
		fault          wechattest.Fault
		status, errcod int
	}{
		{"40052", wechattest.Fault{ErrCode: 40052}, 400, 40052},
		{"40053", wechattest.Fault{ErrCode: 40053}, 400, 40053},
		{"no url", wechattest.Fault{Body: []byte(`{"ticket":"gQH","expire_seconds":60}`)}, 502, 990502},
		{"lifetime", wechattest.Fault{ErrCode: 45029}, 403, 45029},
	}
	for i, tt := range faults {
		t.Run(tt.name, func(t *testing.T) {
			scene := fmt.Sprintf("fault-%d", i)
			fake.Inject(wechattest.PathOACode, tt.fault, 1)
			resp, body := s.get("/oa?scene=" + scene)
			assertError(t, resp, body, tt.status, tt.errcod)
			resp, body = s.get("/oa?scene=" + scene)
			assertOACode(t, resp, body, 430, fake.OAURL(scene, false))
		})
	}
}

// A signed URL of an official account's code signs api, appid, expire in
// seconds and scene, as docs/oa-codes.md tells signing backends.
func TestOASigned(t *testing.T) {
	t.Setenv(signKeyEnv, signKey)
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/oa", "api oa_temporary\nexpire 7d\nsign_key {env."+signKeyEnv+"}"))
	canonical := url.Values{"api": {"oa_temporary"}, "appid": {testAppID}, "expire": {"604800"}, "scene": {"follow-9"}}.Encode()
	if canonical != "api=oa_temporary&appid="+testAppID+"&expire=604800&scene=follow-9" {
		t.Fatalf("canonical %q", canonical)
	}
	resp, body := s.get("/oa?scene=follow-9&sig=" + hmacHex(signKey, canonical))
	assertOACode(t, resp, body, 430, fake.OAURL("follow-9", false))
	// Renewed an hour before the 7 days are up.
	if age := maxAge(t, resp); age > 7*24*time.Hour-time.Hour || age < 7*24*time.Hour-time.Hour-time.Minute {
		t.Errorf("max-age %s, want 7 days less the hour's margin", age)
	}
	resp, body = s.get("/oa?scene=follow-10&sig=" + hmacHex(signKey, canonical))
	assertError(t, resp, body, http.StatusForbidden, 990412)
}

// Official-account codes follow the guard rule: oa_permanent like qrcode
// (a total cap or sign_key), oa_temporary like unlimited (any cap or
// sign_key); allow pins scenes; options of other APIs and a bad expire
// are refused at their line.
func TestOAConfig(t *testing.T) {
	refused := []struct {
		name, options string
		want          []string
	}{
		{"permanent allow * and a window cap", "api oa_permanent\nallow *\ncap 10 per 1m", []string{
			"api oa_permanent spends WeChat's lifetime budget of 100,000 codes per app and requests choose the scene (allow * has a *): add a total such as 'cap 20000'", "at Caddyfile:11"}},
		{"permanent scene from the query", "api oa_permanent", []string{"requests choose the scene (the default, scene {query.scene}, reads the request, and no allow list pins it)", "at Caddyfile:7"}},
		{"temporary scene from the query", "api oa_temporary", []string{
			"api oa_temporary has no budget of its own and requests choose the scene (the default, scene {query.scene}, reads the request, and no allow list pins it)", "'cap 5000 per 1m'", "at Caddyfile:7"}},
		{"temporary per visitor only", "api oa_temporary\nallow login-*\ncap 5 per 1m by {client_ip}", []string{"api oa_temporary has no budget of its own"}},
		{"path", "api oa_temporary\npath pages/index/index\ncap 9", []string{"path applies to api qrcode, wxacode, urllink, scheme and shortlink only, not oa_temporary"}},
		{"is_hyaline", "api oa_permanent\nis_hyaline true\ncap 9", []string{"is_hyaline applies to api wxacode and unlimited only, not oa_permanent"}},
		{"expire on permanent", "api oa_permanent\nexpire 1h\ncap 9", []string{"expire applies to api oa_temporary, urllink and scheme only, not oa_permanent"}},
		{"expire short", "api oa_temporary\ncap 9\nexpire 59s", []string{"expire must be whole seconds from 60s to 30d (720h), not 59s", "Caddyfile:12"}},
		{"expire long", "api oa_temporary\nexpire 31d\ncap 9", []string{"expire must be whole seconds from 60s to 30d", "Caddyfile:11"}},
		{"expire fraction", "api oa_temporary\nexpire 90.5s\ncap 9", []string{"expire must be whole seconds", "Caddyfile:11"}},
		{"expire not a duration", "api oa_temporary\nexpire soon\ncap 9", []string{`expire: "soon" is not a duration`, "Caddyfile:11"}},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) { assertRefused(t, tt.options, tt.want...) })
	}
	accepted := []struct{ name, options string }{
		{"temporary with a window cap", "api oa_temporary\ncap 100 per 1m"},
		{"temporary with literal scenes", "api oa_temporary\nallow login follow\nexpire 30d"},
		{"temporary fixed scene", "api oa_temporary\nscene follow"},
		{"permanent total cap", "api oa_permanent\nallow *\ncap 100000"},
		{"permanent literal scenes", "api oa_permanent\nallow shop-1 shop-2"},
		{"permanent sign_key", "api oa_permanent\nsign_key {env." + signKeyEnv + "}"},
	}
	t.Setenv(signKeyEnv, signKey)
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) { assertLoads(t, tt.options) })
	}
}
