package wxqrcode_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// noFollow asks without following a redirect: a link's Location leaves
// the test's loopback.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (s *site) link(path string) (*http.Response, []byte) {
	s.t.Helper()
	resp, err := noFollow.Get(s.url + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, body
}

// linkAge reads the max-age of a link's answer, which is never immutable
// and never longer than the link is served.
func linkAge(t *testing.T, resp *http.Response, scope string) time.Duration {
	t.Helper()
	cc := resp.Header.Get("Cache-Control")
	age, ok := strings.CutPrefix(cc, scope+", max-age=")
	n, err := strconv.Atoi(age)
	if !ok || err != nil || strings.Contains(cc, "immutable") {
		t.Fatalf("Cache-Control %q, want %s, max-age=<seconds>", cc, scope)
	}
	return time.Duration(n) * time.Second
}

const campaign = "/go?path=pages/item/item&query=id%3D42%26from%3Dsms"

// Each api and reply: the link WeChat made, once for every visitor, with
// a Cache-Control no longer than the link is served (30 days, renewed an
// hour early).
func TestLinkReplies(t *testing.T) {
	cases := []struct {
		api, reply, path, prefix, field string
		status                          int
	}{
		{"urllink", "", wechattest.PathURLLink, "https://wxaurl.cn/", "url_link", http.StatusFound},
		{"urllink", "json", wechattest.PathURLLink, "https://wxaurl.cn/", "url_link", http.StatusOK},
		{"urllink", "page", wechattest.PathURLLink, "https://wxaurl.cn/", "url_link", http.StatusOK},
		{"scheme", "", wechattest.PathScheme, "weixin://dl/business/?t=", "openlink", http.StatusFound},
		{"scheme", "json", wechattest.PathScheme, "weixin://dl/business/?t=", "openlink", http.StatusOK},
		{"scheme", "page", wechattest.PathScheme, "weixin://dl/business/?t=", "openlink", http.StatusOK},
		{"shortlink", "", wechattest.PathShortLink, "#小程序://", "link", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.api+"_"+c.reply, func(t *testing.T) {
			fake := newFake(t)
			opts := "api " + c.api + "\nallow pages/item/item?*\ncap 1000"
			if c.reply != "" {
				opts += "\nreply " + c.reply
			}
			s := startSite(t, fake, "", wxBlock(fake, "/go", opts))
			var first string
			for i := range 3 {
				resp, body := s.link(campaign)
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
				}
				if age := linkAge(t, resp, "public"); age < 29*24*time.Hour || age > 30*24*time.Hour-time.Hour {
					t.Errorf("max-age %s, want just under the 30 days less an hour the link is served", age)
				}
				if resp.Header.Get("Expires") == "" {
					t.Error("no Expires")
				}
				got := linkOf(t, resp, body, c.reply, c.field)
				if !strings.HasPrefix(got, c.prefix) {
					t.Fatalf("link %q, want %s...", got, c.prefix)
				}
				if i == 0 {
					first = got
				} else if got != first {
					t.Errorf("link %q, then %q: one link serves every visitor", first, got)
				}
			}
			if n := fake.Calls(c.path); n != 1 {
				t.Errorf("%d calls to %s, want 1", n, c.path)
			}
			body := lastBody(t, fake, c.path)
			if c.api == "shortlink" {
				if body["page_url"] != "pages/item/item?id=42&from=sms" || body["is_permanent"] != false {
					t.Errorf("sent %v", body)
				}
			} else if target := jumpOf(body, c.api); target["path"] != "pages/item/item" || target["query"] != "id=42&from=sms" ||
				body["expire_type"] != 1.0 || body["expire_interval"] != 30.0 {
				t.Errorf("sent %v", body)
			}
			resp, err := noFollow.Head(s.url + campaign)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("HEAD: status %d", resp.StatusCode)
			}
		})
	}
}

// linkOf reads the link out of a reply.
func linkOf(t *testing.T, resp *http.Response, body []byte, reply, field string) string {
	t.Helper()
	switch reply {
	case "", "redirect":
		if resp.StatusCode == http.StatusFound {
			return resp.Header.Get("Location")
		}
		fallthrough
	case "json":
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || m["errcode"] != 0.0 || m["errmsg"] != "ok" {
			t.Fatalf("body %s, want WeChat's shape", body)
		}
		if strings.Contains(string(body), `\u0026`) {
			t.Errorf("body %s: & escaped", body)
		}
		link, _ := m[field].(string)
		return link
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	_, rest, ok := strings.Cut(string(body), `<a id="open" href="`)
	href, _, _ := strings.Cut(rest, `"`)
	if !ok {
		t.Fatalf("page %s has no button", body)
	}
	return strings.ReplaceAll(href, "&amp;", "&")
}

// lastBody is the JSON body of the last request the fake got at path.
func lastBody(t *testing.T, fake *wechattest.Server, path string) map[string]any {
	t.Helper()
	var m map[string]any
	for _, r := range fake.Requests() {
		if r.Path == path {
			m = nil
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatalf("body %s: %v", r.Body, err)
			}
		}
	}
	return m
}

func jumpOf(body map[string]any, api string) map[string]any {
	if api == "scheme" {
		m, _ := body["jump_wxa"].(map[string]any)
		return m
	}
	return body
}

// A link is served until shortly before it expires, then made anew:
// from memory and from the storage.
func TestLinkExpiry(t *testing.T) {
	for name, mem := range map[string]string{"memory": "", "storage": "memory_cache off"} {
		t.Run(name, func(t *testing.T) {
			fake := newFake(t)
			s := startSite(t, fake, "", wxBlock(fake, "/go", "api urllink\nreply json\nexpire 1h\nallow pages/item/item?*\ncap 1000\n"+mem))
			skew := skewClock(t, s)
			resp, body := s.link(campaign)
			first := linkOf(t, resp, body, "json", "url_link")
			// An hour, renewed 6 minutes early.
			if age := linkAge(t, resp, "public"); age <= 50*time.Minute || age > 54*time.Minute {
				t.Errorf("max-age %s, want at most the 54 minutes before renewal", age)
			}
			if b := lastBody(t, fake, wechattest.PathURLLink); b["expire_type"] != 0.0 || b["expire_time"] == nil {
				t.Errorf("sent %v, want an expire_time", b)
			}
			skew.Store(int64(50 * time.Minute))
			resp, body = s.link(campaign)
			if got := linkOf(t, resp, body, "json", "url_link"); got != first {
				t.Errorf("link %q before its renewal, want %q", got, first)
			}
			if age := linkAge(t, resp, "public"); age > 4*time.Minute {
				t.Errorf("max-age %s 50 minutes in, want at most 4 minutes", age)
			}
			skew.Store(int64(55 * time.Minute))
			resp, body = s.link(campaign)
			if got := linkOf(t, resp, body, "json", "url_link"); got == first {
				t.Error("the link was served past its renewal")
			}
			if n := fake.Calls(wechattest.PathURLLink); n != 2 {
				t.Errorf("%d calls, want 2", n)
			}
		})
	}
}

// cq rides on the cached link, URL-encoded, for each visitor: never a new
// call, and never in a shared cache.
func TestLinkCQ(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/go", "api urllink\npath pages/item/item\nquery id=42\ncq {query.cq}"))
	var link string
	for _, cq := range []string{"visitor 1&x=<y>", "visitor-2", ""} {
		resp, body := s.link("/go?cq=" + url.QueryEscape(cq))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		base, got, _ := strings.Cut(loc, "?cq=")
		if link == "" {
			link = base
		} else if base != link {
			t.Errorf("Location %q, want the link %q", loc, link)
		}
		if want := url.QueryEscape(cq); got != want {
			t.Errorf("Location %q, want cq=%s", loc, want)
		}
		scope := "private"
		if cq == "" {
			scope = "public"
		}
		linkAge(t, resp, scope)
	}
	resp, body := s.link("/go?cq=" + strings.Repeat("x", 257))
	assertError(t, resp, body, http.StatusBadRequest, 40097)
	if n := fake.Calls(wechattest.PathURLLink); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// Inputs WeChat would refuse are refused before any call, with WeChat's
// errcode; WeChat's own refusals pass through with their statuses, and
// nothing but a link is cached.
func TestLinkRefusals(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/go", "api urllink\nreply json\nenv_version {query.env}\ncap 1000")+
		wxBlock(fake, "/short", "api shortlink\ncap 1000"))
	for _, c := range []struct {
		path            string
		status, errcode int
	}{
		{"/go?path=/pages/item/item", 400, 40165},
		{"/go?path=pages/item/item%3Fid%3D1", 400, 40165},
		{"/go?path=pages/item/item&query=" + strings.Repeat("a", 1025), 400, 40212},
		{"/go?path=pages/item/item&query=a%3D%5Cu0026", 400, 40212},
		{"/go?path=pages/item/item&env=beta", 400, 85402},
		{"/short?path=", 400, 40165},
	} {
		resp, body := s.link(c.path)
		assertError(t, resp, body, c.status, c.errcode)
	}
	if n := fake.LinkCalls(); n != 0 {
		t.Fatalf("%d link calls for refused inputs, want 0", n)
	}
	for _, c := range []struct {
		errcode, status int
		retry           bool
	}{
		{40165, 400, false}, {40212, 400, false}, {85402, 400, false}, {85079, 409, false},
		{45009, 429, true}, {44990, 429, true}, {44993, 429, true},
	} {
		fake.Inject(wechattest.PathURLLink, wechattest.Fault{ErrCode: c.errcode}, 1)
		resp, body := s.link("/go?path=pages/index/index")
		assertError(t, resp, body, c.status, c.errcode)
		if got := resp.Header.Get("Retry-After"); (got != "") != c.retry {
			t.Errorf("errcode %d: Retry-After %q", c.errcode, got)
		}
	}
	calls := fake.Calls(wechattest.PathURLLink)
	resp, body := s.link("/go?path=pages/index/index")
	if resp.StatusCode != http.StatusOK || fake.Calls(wechattest.PathURLLink) != calls+1 {
		t.Errorf("after the refusals: status %d, %d calls (want one more than %d): %s", resp.StatusCode, fake.Calls(wechattest.PathURLLink), calls, body)
	}
}

// A config whose requests choose links needs sign_key or a cap, and
// options that do not fit links are refused at load.
func TestLinkGuard(t *testing.T) {
	for _, c := range []struct{ options, want string }{
		{"api urllink", "api urllink spends WeChat's daily budget"},
		{"api scheme\nallow pages/*", "allow pages/* has a *"},
		{"api urllink\ncap 10 per 1m by {client_ip}", "does not bound"},
		{"api shortlink\npermanent true\ncap 100 per 1d", "lifetime budget of 100,000 permanent links"},
		{"api shortlink\ntitle {query.title}\nallow pages/item/item", "title {query.title} reads the request"},
		{"api urllink\nexpire 31d\ncap 10", "expire must be whole seconds from 60s to 30d"},
		{"api shortlink\nreply redirect\ncap 10", "reply json only"},
		{"api scheme\ncq {query.cq}\ncap 10", "cq applies to api urllink only"},
		{"api urllink\nwidth 430\ncap 10", "width applies to codes"},
		{"api qrcode\nquery a=1\ncap 10", "query applies to api urllink, scheme and shortlink only"},
		{"api urllink\nreply image\ncap 10", "reply must be redirect, json or page"},
	} {
		_, err := adapt(caddyfile(t, 1, t.TempDir(), "wxqrcode /go {\n appid wx0\n secret {env.S}\n "+strings.ReplaceAll(c.options, "\n", "\n ")+"\n}"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.options, err, c.want)
		}
	}
	for _, ok := range []string{
		"api urllink\ncap 1000 per 1d",
		"api urllink\nsign_key {env.K}",
		"api scheme\npath pages/index/index\nquery {env.Q}",
		"api urllink\nallow pages/item/item?id=1 pages/index/index",
		"api shortlink\npermanent true\ncap 1000",
		"api shortlink\ncap 10 per 1m",
	} {
		if _, err := adapt(caddyfile(t, 1, t.TempDir(), "wxqrcode /go {\n appid wx0\n secret {env.S}\n "+strings.ReplaceAll(ok, "\n", "\n ")+"\n}")); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// A permanent short link is kept for good; a signed route signs links,
// and caddy wxqrcode sign signs link URLs.
func TestLinkPermanentSigned(t *testing.T) {
	t.Setenv(signKeyEnv, signKey)
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/short", "api shortlink\npermanent true\ntitle \"Spring sale\"\nsign_key {env."+signKeyEnv+"}")+
		wxBlock(fake, "/go", "api urllink\nsign_key {env."+signKeyEnv+"}"))
	out, err := exec.Command(builtCaddy(t), "wxqrcode", "sign", "--appid", testAppID, "--api", "urllink", "--key-env", signKeyEnv,
		s.url+"/go?path=pages/item/item&query=id%3D42").Output()
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if resp, body := s.link(strings.TrimPrefix(strings.TrimSpace(string(out)), s.url)); resp.StatusCode != http.StatusFound {
		t.Errorf("signed %s: status %d: %s", out, resp.StatusCode, body)
	}
	canonical := "api=shortlink&appid=" + testAppID + "&path=pages%2Fitem%2Fitem&permanent=true&query=id%3D42&title=Spring+sale"
	resp, body := s.link("/short?path=pages/item/item&query=id%3D42")
	assertError(t, resp, body, http.StatusForbidden, 990411)
	resp, body = s.link("/short?path=pages/item/item&query=id%3D42&sig=" + hmacHex(signKey, canonical))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("Cache-Control %q for a permanent link", cc)
	}
	if b := lastBody(t, fake, wechattest.PathShortLink); b["is_permanent"] != true || b["page_title"] != "Spring sale" {
		t.Errorf("sent %v", b)
	}
}

// Every token mode makes links.
func TestLinkTokenModes(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/stable", "api urllink\nreply json\ncap 100")+
		wxBlock(fake, "/classic", "api urllink\nreply json\ntoken classic\ncap 100")+
		noSecretBlock(fake, "/url", "api urllink\nreply json\ntoken url "+fake.CentralTokenURL()+"\ncap 100"))
	for _, route := range []string{"/stable", "/classic", "/url"} {
		resp, body := s.link(route + "?path=pages/index/index&query=from%3D" + route[1:])
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d: %s", route, resp.StatusCode, body)
		}
	}
	none := newFake(t)
	none.SetNoToken(true)
	n := startSite(t, none, "", noSecretBlock(none, "/none", "api scheme\nreply json\ntoken none\ncap 100"))
	if resp, body := n.link("/none?path=pages/index/index"); resp.StatusCode != http.StatusOK {
		t.Errorf("/none: status %d: %s", resp.StatusCode, body)
	}
}

// 1,000 visitors of one campaign link, 100 at a time, each with a cq of
// their own: one call.
func TestLinkThousandVisitors(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/go", "api urllink\npath pages/item/item\nquery id=42&from=sms\ncq {query.cq}"))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	var mu sync.Mutex
	links := map[string]int{}
	for i := range 1000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := noFollow.Get(fmt.Sprintf("%s/go?cq=v%d", s.url, i))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			base, _, _ := strings.Cut(resp.Header.Get("Location"), "?")
			mu.Lock()
			links[base]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	n := fake.Calls(wechattest.PathURLLink)
	t.Logf("1000 visitors of one campaign link: %d call(s) to generate_urllink", n)
	if n != 1 || len(links) != 1 {
		t.Errorf("%d calls and links %v, want 1 call and one link", n, links)
	}
}

// Two instances on one storage, 100 visitors at once: one call.
func TestLinkCluster(t *testing.T) {
	fake := newFake(t)
	fake.Inject(wechattest.PathURLLink, wechattest.Fault{Delay: 300 * time.Millisecond}, 0)
	sites := startCluster(t, 2, wxBlock(fake, "/go", "api urllink\nreply json\npath pages/item/item\nquery id=42"))
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(sites[i%2].url + "/go")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if n := fake.Calls(wechattest.PathURLLink); n != 1 {
		t.Errorf("%d calls across the cluster, want 1", n)
	}
}

// The metrics count links by api; stats counts the stored links by api,
// and purge removes one, so that the next visitor gets a new link.
func TestLinkMetricsStatsPurge(t *testing.T) {
	fake := newFake(t)
	m := startSite(t, fake, "", "metrics /metrics\n\t"+wxBlock(fake, "/go", "api urllink\nreply json\ncap 100")+
		wxBlock(fake, "/scheme", "api scheme\nreply json\ncap 100"))
	before, _ := scrape(t, m)
	m.link("/go?path=pages/item/item")
	m.link("/go?path=pages/item/item")
	m.link("/scheme?path=pages/item/item")
	after, _ := scrape(t, m)
	for name, delta := range map[string]float64{
		`caddy_wxqrcode_upstream_calls_total{api="urllink",errcode="0"}`: 1,
		`caddy_wxqrcode_upstream_calls_total{api="scheme",errcode="0"}`:  1,
		`caddy_wxqrcode_codes_generated_total{api="urllink"}`:            1,
		`caddy_wxqrcode_codes_generated_total{api="scheme"}`:             1,
	} {
		if got := after[name] - before[name]; got != delta {
			t.Errorf("%s rose by %v, want %v", name, got, delta)
		}
	}

	afake := newFake(t)
	s := startAdminSite(t, afake, "", wxBlock(afake, "/go", "api urllink\nreply json\ncap 100"))
	uri := "/go?path=pages/item/item&query=id%3D42"
	resp, body := s.link(uri)
	first := linkOf(t, resp, body, "json", "url_link")
	waitCached(t, s.dir, 1)
	stdout, stderr, status := wxcmd(t, nil, "", "stats", "--address", s.admin)
	if status != 0 || !regexp.MustCompile(`urllink\s+`+testAppID+`\s+1\n`).MatchString(stdout) {
		t.Errorf("stats: exit status %d\n%s%s", status, stdout, stderr)
	}
	stdout, stderr, status = wxcmd(t, nil, "", "purge", "--address", s.admin, s.url+uri)
	if status != 0 || !strings.Contains(stdout, "codes removed: 1\n") {
		t.Fatalf("purge: exit status %d\n%s%s", status, stdout, stderr)
	}
	resp, body = s.link(uri)
	if got := linkOf(t, resp, body, "json", "url_link"); got == first || afake.Calls(wechattest.PathURLLink) != 2 {
		t.Errorf("after the purge: link %q (was %q), %d calls, want a new link from a second call", got, first, afake.Calls(wechattest.PathURLLink))
	}
}

// caddy wxqrcode prefetch makes links ahead of a campaign, and stops at
// a link route's redirect instead of following it out of the site.
func TestLinkPrefetch(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/go", "api urllink\ncap 100"))
	cmd := exec.Command(builtCaddy(t), "wxqrcode", "prefetch", "--url", s.url+"/go")
	cmd.Stdin = strings.NewReader("pages/item/item\npages/index/index\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "2 fetched, 0 already cached, 0 failed") {
		t.Fatalf("prefetch: %v\n%s", err, out)
	}
	resp, _ := s.link("/go?path=pages/item/item")
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Cache-Status"), "; hit") {
		t.Errorf("after prefetch: status %d, Cache-Status %q, want a hit", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
}

// Links count against max_stored like codes, and expired links are
// removed from the storage when the route stores another.
func TestLinkStored(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	s := startSite(t, fake, dir, wxBlock(fake, "/go", "api urllink\nreply json\nexpire 1h\nmemory_cache off\nmax_stored 3\ncap 100"))
	skew := skewClock(t, s)
	for i := range 5 {
		resp, body := s.link(fmt.Sprintf("/go?path=pages/item/item&query=id%%3D%d", i))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		waitCached(t, dir, min(i+1, 3))
	}
	skew.Store(int64(2 * time.Hour))
	if resp, body := s.link("/go?path=pages/index/index"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	waitCached(t, dir, 1)
}

// A site's own Cache-Control, right for codes that never change, neither
// keeps a link past its end nor lets a shared cache keep a visitor's cq;
// and a cq read from a header makes every answer of the route private,
// those without one too.
func TestLinkCacheControlOverridden(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", "header Cache-Control \"public, max-age=31536000\"\n\t"+
		wxBlock(fake, "/go", "api urllink\npath pages/item/item\nquery id=42\nexpire 1h\ncq {header.X-Visitor}"))
	for _, visitor := range []string{"", "alice"} {
		req, err := http.NewRequest(http.MethodGet, s.url+"/go", nil)
		if err != nil {
			t.Fatal(err)
		}
		if visitor != "" {
			req.Header.Set("X-Visitor", visitor)
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("visitor %q: status %d", visitor, resp.StatusCode)
		}
		if age := linkAge(t, resp, "private"); age > time.Hour {
			t.Errorf("visitor %q: max-age %s outlives the link's hour", visitor, age)
		}
	}
}

// Permanent short links have a ledger of their own: a route of 30-day
// short links storing past its max_stored never pushes a permanent one
// out, to be asked again out of the lifetime budget.
func TestPermanentShortLinksKeptApart(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", wxBlock(fake, "/p", "api shortlink\npermanent true\npath pages/item/item\nquery id=1\ntitle Sale\nmemory_cache off")+
		wxBlock(fake, "/t", "api shortlink\ncap 100 per 1d\nmax_stored 1\nmemory_cache off"))
	resp, first := s.link("/p")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, first)
	}
	for _, q := range []string{"a", "b"} {
		if resp, body := s.link("/t?path=pages/item/item&query=" + q + "&title=T"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
	}
	// The stores end just after their answers.
	time.Sleep(300 * time.Millisecond)
	resp, again := s.link("/p")
	if resp.StatusCode != http.StatusOK || string(again) != string(first) {
		t.Errorf("the permanent link changed: %s, then %d %s", first, resp.StatusCode, again)
	}
	if n := fake.Calls(wechattest.PathShortLink); n != 3 {
		t.Errorf("%d short link calls, want 3: the permanent one kept", n)
	}
}
