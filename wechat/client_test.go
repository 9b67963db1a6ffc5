package wechat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

const (
	testAppID  = "wx0123456789abcdef"
	testSecret = "0123456789abcdef0123456789abcdef"
)

// newClient starts a fake and a client using its stable tokens.
func newClient(t *testing.T) (*wechattest.Server, *wechat.Client) {
	t.Helper()
	fake := wechattest.NewServer(testAppID, testSecret)
	t.Cleanup(fake.Close)
	src := &wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}}
	return fake, &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NewReuseTokenSource(src), Backoff: time.Millisecond}
}

func qr(path string) *wechat.QRCodeRequest { return &wechat.QRCodeRequest{Path: path} }

func TestCodeAPIs(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		call  func() (*wechat.Image, error)
		ctype string
		width int
		path  string
	}{
		{"qrcode", func() (*wechat.Image, error) {
			return c.CreateQRCode(ctx, &wechat.QRCodeRequest{Path: "pages/item/item?id=42", Width: 280})
		}, "image/jpeg", 280, wechattest.PathQRCode},
		{"wxacode", func() (*wechat.Image, error) {
			return c.GetWxaCode(ctx, &wechat.WxaCodeRequest{Path: "pages/item/item?id=42", LineColor: &wechat.Color{R: 255}})
		}, "image/jpeg", 430, wechattest.PathWxaCode},
		{"wxacode hyaline is a png labelled jpeg", func() (*wechat.Image, error) {
			return c.GetWxaCode(ctx, &wechat.WxaCodeRequest{Path: "pages/index/index", IsHyaline: true, Width: 300})
		}, "image/png", 300, wechattest.PathWxaCode},
		{"unlimited", func() (*wechat.Image, error) {
			return c.GetUnlimited(ctx, &wechat.UnlimitedRequest{Scene: "id=42", Page: "pages/item/item", Width: 1280})
		}, "image/jpeg", 1280, wechattest.PathUnlimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.Calls(tt.path)
			img, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if img.ContentType != tt.ctype {
				t.Errorf("content type %q, want %q", img.ContentType, tt.ctype)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(img.Data))
			if err != nil || cfg.Width != tt.width || "image/"+format != tt.ctype {
				t.Errorf("decoded %s %dpx (%v), want %s %dpx", format, cfg.Width, err, tt.ctype, tt.width)
			}
			if got := fake.Calls(tt.path) - before; got != 1 {
				t.Errorf("%d calls to %s, want 1", got, tt.path)
			}
		})
	}
	if fake.TokenCalls() != 1 {
		t.Errorf("%d token calls for four code calls, want 1", fake.TokenCalls())
	}
}

func TestRequestWireShape(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	_, err := c.GetUnlimited(context.Background(), &wechat.UnlimitedRequest{
		Scene: "a=1", Page: "pages/item/item", EnvVersion: wechat.EnvTrial, LineColor: &wechat.Color{R: 1, G: 2, B: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got *wechattest.Request
	for _, r := range fake.Requests() {
		if r.Path == wechattest.PathUnlimited {
			got = &r
		}
	}
	if got == nil || got.Method != "POST" || got.Query.Get("access_token") == "" {
		t.Fatalf("want a POST with access_token in the query, got %+v", got)
	}
	var body map[string]any
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("body is not JSON: %q", got.Body)
	}
	want := map[string]any{"scene": "a=1", "page": "pages/item/item", "env_version": "trial",
		"line_color": map[string]any{"r": 1.0, "g": 2.0, "b": 3.0}}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("body %v, want %v", body, want)
	}
}

// Bodies go out byte for byte as WeChat's docs show them: &, < and > as
// themselves, never \u0026, \u003c, \u003e, which WeChat reads as
// written.
func TestBodiesNotHTMLEscaped(t *testing.T) {
	t.Parallel()
	const path = "pages/item/item?id=1&from=poster&tag=<new>"
	for _, tc := range []struct {
		upstream string
		call     func(*wechat.Client) error
		want     string
	}{
		{wechattest.PathQRCode, func(c *wechat.Client) error {
			_, err := c.CreateQRCode(context.Background(), &wechat.QRCodeRequest{Path: path, Width: 1280})
			return err
		}, `{"path":"pages/item/item?id=1&from=poster&tag=<new>","width":1280}`},
		{wechattest.PathWxaCode, func(c *wechat.Client) error {
			_, err := c.GetWxaCode(context.Background(), &wechat.WxaCodeRequest{Path: path})
			return err
		}, `{"path":"pages/item/item?id=1&from=poster&tag=<new>"}`},
		{wechattest.PathUnlimited, func(c *wechat.Client) error {
			_, err := c.GetUnlimited(context.Background(), &wechat.UnlimitedRequest{Scene: "a=1&b=2"})
			return err
		}, `{"scene":"a=1&b=2"}`},
	} {
		fake, c := newClient(t)
		if err := tc.call(c); err != nil {
			t.Fatalf("%s: %v", tc.upstream, err)
		}
		var got []string
		for _, r := range fake.Requests() {
			if r.Path == tc.upstream {
				got = append(got, string(r.Body))
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: sent %q, want %s", tc.upstream, got, tc.want)
		}
	}
}

func TestNumUsed(t *testing.T) {
	t.Parallel()
	_, c := newClient(t)
	ctx := context.Background()
	for i, path := range []string{"a", "b", "a"} {
		img, err := c.GetWxaCode(ctx, &wechat.WxaCodeRequest{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{1, 2, 2}[i]; img.NumUsed != want {
			t.Errorf("call %d: NumUsed %d, want %d", i, img.NumUsed, want)
		}
	}
	img, err := c.CreateQRCode(ctx, qr("c"))
	if err != nil || img.NumUsed != -1 {
		t.Errorf("createQRCode sends no Num-Used: got %d, %v", img.NumUsed, err)
	}
}

func TestTokenReusedUntilExpiry(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	fake.SetTokenTTL(time.Second)
	ctx := context.Background()
	for range 5 {
		if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.TokenCalls(); n != 1 {
		t.Fatalf("%d token calls for 5 code calls, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
		t.Fatal(err)
	}
	if n := fake.TokenCalls(); n != 2 {
		t.Fatalf("%d token calls after expiry, want 2", n)
	}
	if toks := fake.Tokens(); len(toks) != 2 || toks[0] == toks[1] {
		t.Fatalf("want two distinct tokens, got %d", len(toks))
	}
}

func TestRefusedTokenReplacedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		break_ func(*wechattest.Server)
	}{
		{"expired", (*wechattest.Server).ExpireTokens},
		{"invalidated", (*wechattest.Server).InvalidateTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, c := newClient(t)
			ctx := context.Background()
			if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
				t.Fatal(err)
			}
			tc.break_(fake)
			if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
				t.Fatalf("want success after one refresh, got %v", err)
			}
			if fake.TokenCalls() != 2 || fake.CodeCalls() != 3 {
				t.Errorf("token calls %d, code calls %d; want 2 and 3", fake.TokenCalls(), fake.CodeCalls())
			}
		})
	}
}

// A stable token that WeChat still hands out but the code APIs refuse is
// replaced with force_refresh.
func TestRefusedStableTokenForceRefreshed(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	ctx := context.Background()
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeInvalidCredential}, 1)
	if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
		t.Fatal(err)
	}
	if forces := fake.ForceRefreshes(); fmt.Sprint(forces) != "[false false true]" {
		t.Errorf("force_refresh per token call %v, want [false false true]", forces)
	}
}

func TestRefusedTokenRetriedOnlyOnce(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeTokenExpired}, 0)
	_, err := c.CreateQRCode(context.Background(), qr("a"))
	var werr *wechat.Error
	if !errors.As(err, &werr) || werr.Code != wechat.CodeTokenExpired {
		t.Fatalf("want errcode 42001, got %v", err)
	}
	if n := fake.CodeCalls(); n != 2 {
		t.Errorf("%d code calls, want 2 (one retry)", n)
	}
}

func TestInvalidateOnlyCurrent(t *testing.T) {
	t.Parallel()
	fake := wechattest.NewServer(testAppID, testSecret)
	defer fake.Close()
	src := wechat.NewReuseTokenSource(&wechat.ClassicTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}})
	ctx := context.Background()
	first, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src.Invalidate(first.AccessToken)
	second, err := src.Token(ctx)
	if err != nil || second.AccessToken == first.AccessToken {
		t.Fatalf("want a new token after Invalidate, got %v", err)
	}
	src.Invalidate(first.AccessToken) // stale: must not drop the newer one
	third, err := src.Token(ctx)
	if err != nil || third.AccessToken != second.AccessToken || fake.TokenCalls() != 2 {
		t.Fatalf("a stale Invalidate dropped the current token (%d token calls)", fake.TokenCalls())
	}
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	t.Parallel()
	for _, classic := range []bool{false, true} {
		t.Run(fmt.Sprint("classic=", classic), func(t *testing.T) {
			fake := wechattest.NewServer(testAppID, testSecret)
			defer fake.Close()
			var src wechat.TokenSource = &wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}}
			path := wechattest.PathStableToken
			if classic {
				src = &wechat.ClassicTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}}
				path = wechattest.PathToken
			}
			fake.Inject(path, wechattest.Fault{Delay: 100 * time.Millisecond}, 1)
			reuse := wechat.NewReuseTokenSource(src)
			var wg sync.WaitGroup
			toks := make([]string, 50)
			for i := range toks {
				wg.Go(func() {
					tok, err := reuse.Token(context.Background())
					if err == nil {
						toks[i] = tok.AccessToken
					}
				})
			}
			wg.Wait()
			for _, tok := range toks {
				if tok == "" || tok != toks[0] {
					t.Fatal("callers got different or no tokens")
				}
			}
			if n := fake.TokenCalls(); n != 1 {
				t.Errorf("%d token calls for 50 concurrent callers, want 1", n)
			}
		})
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	fake := wechattest.NewServer(testAppID, testSecret)
	defer fake.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		src  wechat.TokenSource
		code int
	}{
		{&wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: "wxnope", Secret: testSecret}}, wechat.CodeInvalidAppID},
		{&wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: "wrong"}}, wechat.CodeInvalidSecret},
		{&wechat.ClassicTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: "wrong"}}, wechat.CodeInvalidSecret},
	} {
		_, err := tc.src.Token(ctx)
		var werr *wechat.Error
		if !errors.As(err, &werr) || werr.Code != tc.code || len(werr.Body) == 0 {
			t.Errorf("want errcode %d with body, got %v", tc.code, err)
		}
		if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), testSecret) {
			t.Errorf("error %q shows the secret", err)
		}
	}
}

func TestReplyShapes(t *testing.T) {
	t.Parallel()
	html := []byte("<html><body><h1>502 Bad Gateway</h1></body></html>")
	tests := []struct {
		name  string
		fault wechattest.Fault
		check func(error) bool
	}{
		{"errcode", wechattest.Fault{ErrCode: wechat.CodePathLength},
			func(err error) bool {
				var werr *wechat.Error
				return errors.As(err, &werr) && werr.Code == wechat.CodePathLength &&
					strings.Contains(werr.Message, "rid:") && bytes.HasPrefix(werr.Body, []byte(`{"errcode":40159`))
			}},
		{"lifetime limit", wechattest.Fault{ErrCode: wechat.CodeLifetimeLimit},
			func(err error) bool { var werr *wechat.Error; return errors.As(err, &werr) && werr.Code == 45029 }},
		{"html 502", wechattest.Fault{Status: 502, Body: html, ContentType: "text/html"},
			func(err error) bool {
				var serr *wechat.StatusError
				return errors.As(err, &serr) && serr.StatusCode == 502
			}},
		{"garbage labelled jpeg", wechattest.Fault{Garbage: true},
			func(err error) bool { return errors.Is(err, wechat.ErrBadReply) }},
		{"truncated image", wechattest.Fault{Truncate: true},
			func(err error) bool { return err != nil && !errors.Is(err, wechat.ErrReplyTooLarge) }},
		{"connection reset", wechattest.Fault{Reset: true},
			func(err error) bool { return err != nil && strings.Contains(err.Error(), wechattest.PathQRCode) }},
		{"endless reply", wechattest.Fault{Endless: true},
			func(err error) bool { return errors.Is(err, wechat.ErrReplyTooLarge) }},
		{"busy forever", wechattest.Fault{ErrCode: wechat.CodeBusy},
			func(err error) bool { var werr *wechat.Error; return errors.As(err, &werr) && werr.Code == -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, c := newClient(t)
			c.MaxReplySize = 256 << 10
			fake.Inject(wechattest.PathQRCode, tt.fault, 0)
			img, err := c.CreateQRCode(context.Background(), qr("pages/index/index"))
			if img != nil || !tt.check(err) {
				t.Fatalf("unexpected result: %v", err)
			}
			assertNoSecret(t, fake, err.Error())
		})
	}
}

func TestBusyRetried(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeBusy}, 2)
	if _, err := c.CreateQRCode(context.Background(), qr("a")); err != nil {
		t.Fatalf("want success on the third try, got %v", err)
	}
	if n := fake.CodeCalls(); n != 3 {
		t.Errorf("%d code calls, want 3", n)
	}
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeBusy}, 0)
	fake.ResetCounters()
	if _, err := c.CreateQRCode(context.Background(), qr("a")); err == nil {
		t.Fatal("want an error while WeChat stays busy")
	}
	if n := fake.CodeCalls(); n != 1+wechat.DefaultRetries {
		t.Errorf("%d code calls, want %d", n, 1+wechat.DefaultRetries)
	}
}

func TestOversizeReply(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	c.MaxReplySize = 1000 // a real image is larger
	_, err := c.CreateQRCode(context.Background(), qr("a"))
	if !errors.Is(err, wechat.ErrReplyTooLarge) {
		t.Fatalf("want ErrReplyTooLarge, got %v", err)
	}
	assertNoSecret(t, fake, err.Error())
}

func TestTimeoutAndUnreachable(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Delay: 2 * time.Second}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.CreateQRCode(ctx, qr("a"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	assertNoSecret(t, fake, err.Error())

	url := fake.URL
	fake.Close()
	c.BaseURL = url // the token is cached, so the code call itself fails
	_, err = c.CreateQRCode(context.Background(), qr("b"))
	if err == nil || !strings.Contains(err.Error(), "/cgi-bin/wxaapp/createwxaqrcode") {
		t.Fatalf("want a network error naming the path, got %v", err)
	}
	assertNoSecret(t, fake, err.Error())

	classic := &wechat.ClassicTokenSource{Credentials: wechat.Credentials{BaseURL: url, AppID: testAppID, Secret: testSecret}}
	_, err = classic.Token(context.Background())
	if err == nil {
		t.Fatal("want an error from a closed server")
	}
	assertNoSecret(t, fake, err.Error())
}

func TestTokenNotPrinted(t *testing.T) {
	t.Parallel()
	tok := &wechat.Token{AccessToken: "ACCESS-TOKEN-VALUE"}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok)} {
		if strings.Contains(s, tok.AccessToken) {
			t.Errorf("printed token: %s", s)
		}
	}
}

// assertNoSecret fails if s holds the secret or any token the fake issued.
func assertNoSecret(t *testing.T, fake *wechattest.Server, s string) {
	t.Helper()
	if strings.Contains(s, testSecret) {
		t.Errorf("secret in %q", s)
	}
	for _, tok := range fake.Tokens() {
		if strings.Contains(s, tok) {
			t.Errorf("access token in %q", s)
		}
	}
}

// A token endpoint answering with a token errcode is not a refused token.
func TestTokenEndpointErrorNotRetried(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	fake.Inject(wechattest.PathStableToken, wechattest.Fault{ErrCode: wechat.CodeInvalidCredential}, 0)
	_, err := c.CreateQRCode(context.Background(), qr("a"))
	var werr *wechat.Error
	if !errors.As(err, &werr) || werr.Code != wechat.CodeInvalidCredential {
		t.Fatalf("want errcode 40001, got %v", err)
	}
	if fake.TokenCalls() != 1 || fake.CodeCalls() != 0 {
		t.Errorf("%d token and %d code calls, want 1 and 0", fake.TokenCalls(), fake.CodeCalls())
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var hits sync.Map
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.String()+" "+r.Referer(), true)
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	for _, src := range []wechat.TokenSource{
		&wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: redirector.URL, AppID: testAppID, Secret: testSecret}},
		&wechat.ClassicTokenSource{Credentials: wechat.Credentials{BaseURL: redirector.URL, AppID: testAppID, Secret: testSecret}},
	} {
		_, err := src.Token(context.Background())
		var serr *wechat.StatusError
		if !errors.As(err, &serr) || serr.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("want a 307 StatusError, got %v", err)
		}
	}
	c := &wechat.Client{BaseURL: redirector.URL, Tokens: staticToken("TOKEN-IN-URL")}
	if _, err := c.CreateQRCode(context.Background(), qr("a")); err == nil {
		t.Error("want an error for a redirect")
	}
	hits.Range(func(k, _ any) bool {
		t.Errorf("the redirect was followed: %v", k)
		return true
	})
}

type staticToken string

func (s staticToken) Token(context.Context) (*wechat.Token, error) {
	return &wechat.Token{AccessToken: string(s), Expiry: time.Now().Add(time.Hour)}, nil
}

func TestClientWithoutTokens(t *testing.T) {
	t.Parallel()
	c := &wechat.Client{BaseURL: "http://127.0.0.1:1"}
	if _, err := c.CreateQRCode(context.Background(), qr("a")); err == nil {
		t.Fatal("want an error, not a panic")
	}
}

// Passing faults are retried within the deadline: a reset connection and
// a proxy's 503 page, as well as WeChat's -1.
func TestTransientFaultsRetried(t *testing.T) {
	t.Parallel()
	for _, f := range []wechattest.Fault{{Reset: true}, {Status: 503, Body: []byte("<html>busy</html>")}, {Truncate: true}} {
		fake, c := newClient(t)
		fake.Inject(wechattest.PathQRCode, f, 2)
		if _, err := c.CreateQRCode(context.Background(), qr("a")); err != nil {
			t.Fatalf("%+v: want success on the third try, got %v", f, err)
		}
		if n := fake.CodeCalls(); n != 3 {
			t.Errorf("%+v: %d code calls, want 3", f, n)
		}
	}
	// Faults that will not pass are not retried.
	for _, f := range []wechattest.Fault{{Garbage: true}, {ErrCode: 40159}, {Status: 404}} {
		fake, c := newClient(t)
		fake.Inject(wechattest.PathQRCode, f, 0)
		if _, err := c.CreateQRCode(context.Background(), qr("a")); err == nil {
			t.Fatalf("%+v: want an error", f)
		}
		if n := fake.CodeCalls(); n != 1 {
			t.Errorf("%+v: %d code calls, want 1", f, n)
		}
	}
}

// A failing token endpoint is asked a handful of times by a stream of
// callers, and again once its backoff has passed.
func TestTokenFailuresBackedOff(t *testing.T) {
	t.Parallel()
	fake := wechattest.NewServer(testAppID, testSecret)
	defer fake.Close()
	fake.Inject(wechattest.PathStableToken, wechattest.Fault{Status: 502}, 0)
	src := wechat.NewReuseTokenSource(&wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}})
	ctx := context.Background()
	deadline := time.Now().Add(time.Second)
	calls := 0
	for time.Now().Before(deadline) {
		if _, err := src.Token(ctx); err == nil {
			t.Fatal("want an error while the endpoint fails")
		}
		calls++
		time.Sleep(time.Millisecond)
	}
	if n := fake.TokenCalls(); n > 4 {
		t.Errorf("%d token calls for %d callers in a second, want a handful", n, calls)
	}
	fake.ClearFaults()
	time.Sleep(2 * time.Second) // past the longest wait so far
	if _, err := src.Token(ctx); err != nil {
		t.Fatalf("want a token once the endpoint recovers, got %v", err)
	}
}

// refusedStable hands out one token that WeChat has refused, and cannot
// force a new one.
type refusedStable struct {
	mu            sync.Mutex
	calls, forced int
}

func (s *refusedStable) Token(context.Context) (*wechat.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return &wechat.Token{AccessToken: "refused", Expiry: time.Now().Add(time.Hour)}, nil
}

func (s *refusedStable) ForceRefresh(context.Context) (*wechat.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forced++
	return nil, errors.New("token endpoint down")
}

// A forced refresh that fails is backed off like any failed refresh, and
// the refused token is not handed out meanwhile.
func TestFailedForcedRefreshBackedOff(t *testing.T) {
	t.Parallel()
	src := &refusedStable{}
	r := wechat.NewReuseTokenSource(src)
	ctx := context.Background()
	if _, err := r.Token(ctx); err != nil {
		t.Fatal(err)
	}
	r.Invalidate("refused")
	for i := range 3 {
		if tok, err := r.Token(ctx); err == nil {
			t.Fatalf("call %d: got token %q, want the forced refresh's error", i, tok.AccessToken)
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.calls != 2 || src.forced != 1 {
		t.Errorf("%d token calls and %d forced, want 2 and 1: the failure is backed off", src.calls, src.forced)
	}
}

// Failures of either token endpoint are *TokenError, WeChat's own refusal
// still reachable as an *Error; a code API's refusal is not a TokenError.
func TestTokenErrorMarksTokenEndpoint(t *testing.T) {
	t.Parallel()
	fake := wechattest.NewServer(testAppID, testSecret)
	defer fake.Close()
	ctx := context.Background()
	sources := map[string]wechat.TokenSource{
		wechattest.PathStableToken: &wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}},
		wechattest.PathToken:       &wechat.ClassicTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}},
	}
	for path, src := range sources {
		for _, f := range []wechattest.Fault{{ErrCode: 40164}, {Reset: true}, {Status: 502}, {Garbage: true}} {
			fake.ClearFaults()
			fake.Inject(path, f, 0)
			_, err := src.Token(ctx)
			var terr *wechat.TokenError
			if !errors.As(err, &terr) {
				t.Errorf("%s %+v: %v, want a *TokenError", path, f, err)
			}
			var werr *wechat.Error
			if f.ErrCode != 0 && (!errors.As(err, &werr) || werr.Code != f.ErrCode) {
				t.Errorf("%s %+v: %v, want WeChat's errcode inside", path, f, err)
			}
		}
	}
	fake.ClearFaults()
	c := &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NewReuseTokenSource(sources[wechattest.PathStableToken])}
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: 40164}, 0)
	_, err := c.CreateQRCode(ctx, qr("a"))
	var terr *wechat.TokenError
	if err == nil || errors.As(err, &terr) {
		t.Errorf("a code API's refusal: %v, want an error that is no *TokenError", err)
	}
	fake.ClearFaults()
	fake.Inject(wechattest.PathStableToken, wechattest.Fault{ErrCode: 40013}, 0)
	c = &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NewReuseTokenSource(sources[wechattest.PathStableToken])}
	if _, err := c.CreateQRCode(ctx, qr("a")); !errors.As(err, &terr) {
		t.Errorf("a code call whose token fails: %v, want a *TokenError", err)
	}
}
