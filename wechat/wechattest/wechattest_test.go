package wechattest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "0123456789abcdef0123456789abcdef"
)

var (
	ridRE   = regexp.MustCompile(` rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$`)
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{80,}$`)
)

func newServer(t *testing.T) *wechattest.Server {
	t.Helper()
	s := wechattest.NewServer(appID, secret)
	t.Cleanup(s.Close)
	return s
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, rawURL, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, rawURL, err)
	}
	return answer{resp.StatusCode, resp.Header, data}
}

// code calls a code API; an empty token sends no access_token at all.
func code(t *testing.T, s *wechattest.Server, path, token, body string) answer {
	t.Helper()
	u := s.URL + path
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	return do(t, http.MethodPost, u, body)
}

func stableRaw(t *testing.T, s *wechattest.Server, body string) answer {
	t.Helper()
	return do(t, http.MethodPost, s.URL+wechattest.PathStableToken, body)
}

func stable(t *testing.T, s *wechattest.Server, force bool) (string, int) {
	t.Helper()
	return tokenOf(t, stableRaw(t, s, fmt.Sprintf(
		`{"grant_type":"client_credential","appid":%q,"secret":%q,"force_refresh":%t}`, appID, secret, force)))
}

func classicRaw(t *testing.T, s *wechattest.Server, grant, app, sec string) answer {
	t.Helper()
	q := url.Values{"grant_type": {grant}, "appid": {app}, "secret": {sec}}
	return do(t, http.MethodGet, s.URL+wechattest.PathToken+"?"+q.Encode(), "")
}

func classic(t *testing.T, s *wechattest.Server) string {
	t.Helper()
	tok, _ := tokenOf(t, classicRaw(t, s, "client_credential", appID, secret))
	return tok
}

func tokenOf(t *testing.T, a answer) (string, int) {
	t.Helper()
	var r struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(a.body, &r); err != nil || !tokenRE.MatchString(r.AccessToken) {
		t.Fatalf("token reply %d %s: want a long opaque token (err %v)", a.status, a.body, err)
	}
	return r.AccessToken, r.ExpiresIn
}

// wantErr checks that a is WeChat's error shape with the errcode want.
func wantErr(t *testing.T, a answer, want int) {
	t.Helper()
	if a.status != http.StatusOK {
		t.Errorf("status %d, want 200", a.status)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json; encoding=utf-8" {
		t.Errorf("Content-Type %q, want WeChat's JSON type", ct)
	}
	var e struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.ErrCode == nil {
		t.Fatalf("body %.200q: not an error JSON (%v)", a.body, err)
	}
	if *e.ErrCode != want {
		t.Errorf("errcode %d (%s), want %d", *e.ErrCode, e.ErrMsg, want)
	}
	if !ridRE.MatchString(e.ErrMsg) {
		t.Errorf("errmsg %q does not end with a rid", e.ErrMsg)
	}
}

// wantImage checks that a is a code of the given format and width and
// returns its bytes.
func wantImage(t *testing.T, a answer, format string, width int) []byte {
	t.Helper()
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("status %d, Content-Type %q, body %.200q: want an image", a.status, a.header.Get("Content-Type"), a.body)
	}
	cfg, got, err := image.DecodeConfig(bytes.NewReader(a.body))
	if err != nil {
		t.Fatalf("decoding image: %v", err)
	}
	if got != format || cfg.Width != width || cfg.Height != width {
		t.Errorf("got %s %dx%d, want %s %dx%d", got, cfg.Width, cfg.Height, format, width, width)
	}
	return a.body
}

func TestStableTokenReuseAndForceRefresh(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	t1, exp := stable(t, s, false)
	if exp != 7200 {
		t.Errorf("expires_in %d, want 7200", exp)
	}
	if t2, exp2 := stable(t, s, false); t2 != t1 || exp2 < 7199 || exp2 > 7200 {
		t.Errorf("second stable token %q expires_in %d: want the same token, ~7200", t2, exp2)
	}
	wantImage(t, code(t, s, wechattest.PathWxaCode, t1, `{"path":"pages/index/index"}`), "jpeg", 430)

	t3, _ := stable(t, s, true)
	if t3 == t1 {
		t.Fatal("force_refresh returned the old token")
	}
	wantErr(t, code(t, s, wechattest.PathWxaCode, t1, `{"path":"pages/index/index"}`), 40001)
	wantImage(t, code(t, s, wechattest.PathWxaCode, t3, `{"path":"pages/index/index"}`), "jpeg", 430)
	if t4, _ := stable(t, s, false); t4 != t3 {
		t.Error("stable token after force_refresh is not the refreshed one")
	}
	if got := s.Tokens(); len(got) != 2 || got[0] != t1 || got[1] != t3 {
		t.Errorf("Tokens() = %q, want [t1 t3]", got)
	}
}

func TestClassicTokenOverlap(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetClassicOverlap(300 * time.Millisecond)
	a, b := classic(t, s), classic(t, s)
	if a == b {
		t.Fatal("classic token endpoint reused a token")
	}
	body := `{"path":"p"}`
	wantImage(t, code(t, s, wechattest.PathQRCode, a, body), "jpeg", 430)
	time.Sleep(350 * time.Millisecond)
	wantErr(t, code(t, s, wechattest.PathQRCode, a, body), 40001)
	wantImage(t, code(t, s, wechattest.PathQRCode, b, body), "jpeg", 430)
	classic(t, s)
	wantImage(t, code(t, s, wechattest.PathQRCode, b, body), "jpeg", 430)
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetTokenTTL(300 * time.Millisecond)
	tok, exp := stable(t, s, false)
	if exp != 1 {
		t.Errorf("expires_in %d for a 300ms token, want 1 (rounded up)", exp)
	}
	body := `{"scene":"a=1"}`
	wantImage(t, code(t, s, wechattest.PathUnlimited, tok, body), "jpeg", 430)
	time.Sleep(350 * time.Millisecond)
	wantErr(t, code(t, s, wechattest.PathUnlimited, tok, body), 42001)
	if next, _ := stable(t, s, false); next == tok {
		t.Error("stable endpoint handed out an expired token")
	}

	s.SetTokenTTL(time.Hour)
	c := classic(t, s)
	st, _ := stable(t, s, false)
	s.ExpireTokens()
	wantErr(t, code(t, s, wechattest.PathUnlimited, c, body), 42001)
	wantErr(t, code(t, s, wechattest.PathUnlimited, st, body), 42001)

	c = classic(t, s)
	s.InvalidateTokens()
	wantErr(t, code(t, s, wechattest.PathUnlimited, c, body), 40001)
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for _, tc := range []struct {
		grant, app, sec string
		want            int
	}{
		{"password", appID, secret, 40002},
		{"client_credential", "wxother", secret, 40013},
		{"client_credential", "", secret, 40013},
		{"client_credential", appID, "wrong", 40125},
	} {
		wantErr(t, classicRaw(t, s, tc.grant, tc.app, tc.sec), tc.want)
		wantErr(t, stableRaw(t, s, fmt.Sprintf(`{"grant_type":%q,"appid":%q,"secret":%q}`, tc.grant, tc.app, tc.sec)), tc.want)
	}
	wantErr(t, stableRaw(t, s, `not json`), 47001)
	wantErr(t, stableRaw(t, s, `{"grant_type":"client_credential","appid":1}`), 47001)
	wantErr(t, do(t, http.MethodGet, s.URL+wechattest.PathStableToken, ""), 43002)
	wantErr(t, do(t, http.MethodPost, s.URL+wechattest.PathToken+"?grant_type=client_credential", ""), 43001)
	if n := len(s.Tokens()); n != 0 {
		t.Errorf("%d tokens issued by failed calls", n)
	}
	if n := s.TokenCalls(); n != 12 {
		t.Errorf("TokenCalls() = %d, want 12", n)
	}
}

func TestCodeErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name, path, token, body string
		want                    int
	}{
		{"missing token", wechattest.PathWxaCode, "", `{"path":"p"}`, 41001},
		{"unknown token", wechattest.PathWxaCode, "nope", `{"path":"p"}`, 40001},
		{"not json", wechattest.PathWxaCode, tok, `{"path":`, 47001},
		{"empty body", wechattest.PathQRCode, tok, ``, 47001},
		{"wrong type", wechattest.PathWxaCode, tok, `{"path":"p","width":"430"}`, 47001},
		{"wrong color type", wechattest.PathUnlimited, tok, `{"scene":"a","line_color":"red"}`, 47001},
		{"qrcode empty path", wechattest.PathQRCode, tok, `{"path":""}`, 40159},
		{"qrcode long path", wechattest.PathQRCode, tok, `{"path":"` + long(129) + `"}`, 40159},
		{"wxacode long path", wechattest.PathWxaCode, tok, `{"path":"` + long(1025) + `"}`, 40159},
		{"wxacode no path", wechattest.PathWxaCode, tok, `{}`, 40159},
		{"qrcode scancode_time", wechattest.PathQRCode, tok, `{"path":"p?scancode_time=1"}`, 85096},
		{"wxacode scancode_time", wechattest.PathWxaCode, tok, `{"path":"p?scancode_time=1"}`, 85096},
		{"wxacode env", wechattest.PathWxaCode, tok, `{"path":"p","env_version":"beta"}`, 40097},
		{"unlimited env", wechattest.PathUnlimited, tok, `{"scene":"a","env_version":"beta"}`, 40097},
		{"no scene", wechattest.PathUnlimited, tok, `{"page":"pages/index/index"}`, 40169},
		{"long scene", wechattest.PathUnlimited, tok, `{"scene":"` + long(33) + `"}`, 40169},
		{"scene space", wechattest.PathUnlimited, tok, `{"scene":"a b"}`, 40129},
		{"scene escaped &", wechattest.PathUnlimited, tok, `{"scene":"a=1\u0026b=2"}`, 40129},
		{"scene escaped <", wechattest.PathUnlimited, tok, `{"scene":"a\u003C"}`, 40129},
		{"scene escaped >", wechattest.PathUnlimited, tok, `{"scene":"a\u003e"}`, 40129},
		{"scene unicode", wechattest.PathUnlimited, tok, `{"scene":"é"}`, 40129},
		{"page slash", wechattest.PathUnlimited, tok, `{"scene":"a","page":"/pages/index/index"}`, 41030},
		{"page query", wechattest.PathUnlimited, tok, `{"scene":"a","page":"pages/index/index?x=1","check_path":false}`, 41030},
		{"page unpublished", wechattest.PathUnlimited, tok, `{"scene":"a","page":"pages/new/new"}`, 41030},
		{"page unpublished check", wechattest.PathUnlimited, tok, `{"scene":"a","page":"pages/new/new","check_path":true,"env_version":"release"}`, 41030},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, code(t, s, tc.path, tc.token, tc.body), tc.want)
		})
	}

	for _, p := range []string{wechattest.PathQRCode, wechattest.PathWxaCode, wechattest.PathUnlimited} {
		wantErr(t, do(t, http.MethodGet, s.URL+p+"?access_token="+tok, ""), 43002)
	}

	for _, body := range []string{
		`{"scene":"` + long(32) + `"}`,
		`{"scene":"09AZaz!#$&'()*+,/:;=?@-._~"}`,
		`{"scene":"a","page":""}`,
		`{"scene":"a","page":"pages/item/item"}`,
		`{"scene":"a","page":"pages/new/new","check_path":false}`,
		`{"scene":"a","page":"pages/new/new","env_version":"trial"}`,
		`{"scene":"a","page":"pages/new/new","env_version":"develop"}`,
	} {
		wantImage(t, code(t, s, wechattest.PathUnlimited, tok, body), "jpeg", 430)
	}
	wantImage(t, code(t, s, wechattest.PathQRCode, tok, `{"path":"`+long(128)+`"}`), "jpeg", 430)
	wantImage(t, code(t, s, wechattest.PathWxaCode, tok, `{"path":"`+long(1024)+`","env_version":"trial"}`), "jpeg", 430)

	s.SetPages("pages/new/new")
	wantImage(t, code(t, s, wechattest.PathUnlimited, tok, `{"scene":"a","page":"pages/new/new"}`), "jpeg", 430)
	wantErr(t, code(t, s, wechattest.PathUnlimited, tok, `{"scene":"a","page":"pages/index/index"}`), 41030)
}

func TestImages(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	for _, tc := range []struct {
		path, body string
		width      int
	}{
		{wechattest.PathQRCode, `{"path":"p"}`, 430},
		{wechattest.PathQRCode, `{"path":"p","width":100}`, 280},
		{wechattest.PathWxaCode, `{"path":"p","width":500,"line_color":{"r":200,"g":0,"b":0}}`, 500},
		{wechattest.PathWxaCode, `{"path":"p","width":-3,"auto_color":true}`, 280},
		{wechattest.PathUnlimited, `{"scene":"s","width":5000}`, 1280},
	} {
		wantImage(t, code(t, s, tc.path, tok, tc.body), "jpeg", tc.width)
	}

	a := code(t, s, wechattest.PathWxaCode, tok, `{"path":"p","is_hyaline":true}`)
	if !bytes.HasPrefix(a.body, []byte{0x89, 'P', 'N', 'G'}) {
		t.Fatalf("hyaline code starts % x, want PNG", a.body[:min(8, len(a.body))])
	}
	wantImage(t, a, "png", 430)
	img, _, err := image.Decode(bytes.NewReader(a.body))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, alpha := img.At(0, 0).RGBA(); alpha != 0 {
		t.Errorf("hyaline background alpha %d, want transparent", alpha)
	}
	wantImage(t, code(t, s, wechattest.PathUnlimited, tok, `{"scene":"s","is_hyaline":true,"width":300}`), "png", 300)

	// The same code has the same bytes; distinct codes differ.
	p1 := code(t, s, wechattest.PathWxaCode, tok, `{"path":"p1"}`).body
	again := code(t, s, wechattest.PathWxaCode, tok, `{"width":430,"path":"p1","env_version":"release"}`).body
	p2 := code(t, s, wechattest.PathWxaCode, tok, `{"path":"p2"}`).body
	qr := code(t, s, wechattest.PathQRCode, tok, `{"path":"p1"}`).body
	if !bytes.Equal(p1, again) {
		t.Error("the same code has different bytes")
	}
	if bytes.Equal(p1, p2) || bytes.Equal(p1, qr) {
		t.Error("distinct codes have the same bytes")
	}
}

func TestNumUsedAndLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetLimit(2)
	tok, _ := stable(t, s, false)
	numUsed := func(body string) string {
		t.Helper()
		a := code(t, s, wechattest.PathWxaCode, tok, body)
		wantImage(t, a, "jpeg", 430)
		return a.header.Get("Num-Used")
	}
	if n := numUsed(`{"path":"a"}`); n != "1" {
		t.Errorf("Num-Used %q, want 1", n)
	}
	if n := numUsed(`{"path":"a","width":430}`); n != "1" {
		t.Errorf("Num-Used %q after repeating a code, want 1", n)
	}
	wantImage(t, code(t, s, wechattest.PathQRCode, tok, `{"path":"a"}`), "jpeg", 430)
	if n := s.Generated(); n != 2 {
		t.Errorf("Generated() = %d, want 2", n)
	}
	wantErr(t, code(t, s, wechattest.PathWxaCode, tok, `{"path":"b"}`), 45029)
	wantErr(t, code(t, s, wechattest.PathQRCode, tok, `{"path":"b"}`), 45029)
	if n := numUsed(`{"path":"a"}`); n != "2" {
		t.Errorf("Num-Used %q, want 2", n)
	}
	wantImage(t, code(t, s, wechattest.PathUnlimited, tok, `{"scene":"b"}`), "jpeg", 430)
	if n := s.Generated(); n != 2 {
		t.Errorf("Generated() = %d after refusals and an unlimited code, want 2", n)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	const body = `{"path":"p"}`
	get := func() answer { return code(t, s, wechattest.PathWxaCode, tok, body) }
	// fetch is for faults the client must notice: it returns the error.
	fetch := func(timeout time.Duration) (*http.Response, []byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+wechattest.PathWxaCode+"?access_token="+tok, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		return resp, data, err
	}

	t.Run("ErrCode", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{ErrCode: -1}, 1)
		a := code(t, s, wechattest.PathWxaCode, "", body) // no token: the fault wins
		wantErr(t, a, -1)
		if !bytes.Contains(a.body, []byte(`"system error rid: `)) {
			t.Errorf("default message missing in %s", a.body)
		}
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{ErrCode: 45011, ErrMsg: "slow down"}, 1)
		a = get()
		wantErr(t, a, 45011)
		if !bytes.Contains(a.body, []byte(`"slow down rid: `)) {
			t.Errorf("custom message missing in %s", a.body)
		}
		wantImage(t, get(), "jpeg", 430)
	})

	t.Run("Status", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Status: 502, Body: []byte("<html>Bad Gateway</html>"), ContentType: "text/html"}, 1)
		a := get()
		if a.status != 502 || a.header.Get("Content-Type") != "text/html" || string(a.body) != "<html>Bad Gateway</html>" {
			t.Errorf("got %d %q %q", a.status, a.header.Get("Content-Type"), a.body)
		}
	})

	t.Run("Delay", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Delay: 100 * time.Millisecond}, 1)
		start := time.Now()
		wantImage(t, get(), "jpeg", 430)
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("answered after %v, want >= 100ms", d)
		}
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Delay: time.Hour}, 1)
		if _, _, err := fetch(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("delayed call: %v, want a client timeout", err)
		}
	})

	t.Run("Reset", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Reset: true}, 1)
		if _, _, err := fetch(5 * time.Second); err == nil {
			t.Error("reset call succeeded")
		}
	})

	t.Run("Hang", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Hang: true}, 1)
		if _, _, err := fetch(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("hanging call: %v, want a client timeout", err)
		}
	})

	t.Run("Truncate", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Truncate: true}, 1)
		resp, data, err := fetch(5 * time.Second)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated call: %v, want unexpected EOF", err)
		}
		if resp.Header.Get("Content-Type") != "image/jpeg" || resp.ContentLength != int64(2*len(data)) && resp.ContentLength != int64(2*len(data)+1) {
			t.Errorf("Content-Type %q, Content-Length %d for %d bytes sent", resp.Header.Get("Content-Type"), resp.ContentLength, len(data))
		}
	})

	t.Run("Garbage", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Garbage: true}, 1)
		a := get()
		if a.status != 200 || a.header.Get("Content-Type") != "image/jpeg" || len(a.body) != 2048 {
			t.Fatalf("got %d %q with %d bytes", a.status, a.header.Get("Content-Type"), len(a.body))
		}
		if _, _, err := image.DecodeConfig(bytes.NewReader(a.body)); err == nil || json.Valid(a.body) {
			t.Error("garbage is a valid image or JSON")
		}
	})

	t.Run("Endless", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Endless: true}, 1)
		resp, err := http.Post(s.URL+wechattest.PathWxaCode+"?access_token="+tok, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
		if err != nil || n != 4<<20 {
			t.Errorf("read %d bytes (%v), want 4 MiB and more to come", n, err)
		}
	})

	t.Run("EndlessStart", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Endless: true}, 1)
		resp, err := http.Post(s.URL+wechattest.PathWxaCode+"?access_token="+tok, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := make([]byte, 3)
		if _, err := io.ReadFull(resp.Body, start); err != nil || !bytes.Equal(start, []byte{0xff, 0xd8, 0xff}) {
			t.Errorf("endless body starts % x (%v), want a JPEG start", start, err)
		}
	})

	t.Run("Trickle", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Trickle: time.Millisecond}, 1)
		a := code(t, s, wechattest.PathWxaCode, "", body) // the real reply here is the 41001 JSON
		wantErr(t, a, 41001)

		s.Inject(wechattest.PathWxaCode, wechattest.Fault{Trickle: time.Hour}, 1)
		if _, _, err := fetch(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("trickled call: %v, want a client timeout", err)
		}
	})

	t.Run("Queue", func(t *testing.T) {
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{ErrCode: 45009}, 2)
		s.Inject(wechattest.PathWxaCode, wechattest.Fault{ErrCode: 48001}, 1)
		for _, want := range []int{45009, 45009, 48001} {
			wantErr(t, get(), want)
		}
		wantImage(t, get(), "jpeg", 430)

		s.Inject(wechattest.PathWxaCode, wechattest.Fault{ErrCode: 40164}, 0)
		for range 3 {
			wantErr(t, get(), 40164)
		}
		s.ClearFaults()
		wantImage(t, get(), "jpeg", 430)
	})

	t.Run("TokenPath", func(t *testing.T) {
		s.Inject(wechattest.PathStableToken, wechattest.Fault{ErrCode: 40243}, 1)
		wantErr(t, stableRaw(t, s, `{}`), 40243)
		if got, _ := stable(t, s, false); got != tok {
			t.Error("fault changed the stable token")
		}
	})

	t.Run("UnknownCode", func(t *testing.T) {
		s.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: 12345}, 1)
		a := code(t, s, wechattest.PathQRCode, tok, body)
		wantErr(t, a, 12345)
		if !bytes.Contains(a.body, []byte("unknown error")) {
			t.Errorf("got %s", a.body)
		}
	})
}

func TestCloseReleasesHandlers(t *testing.T) {
	t.Parallel()
	s := wechattest.NewServer(appID, secret)
	faults := []wechattest.Fault{
		{Hang: true},
		{Delay: time.Hour},
		{Trickle: time.Hour},
		{Endless: true},
	}
	closed := make(chan struct{})
	var wg sync.WaitGroup
	for i, f := range faults {
		s.Inject(wechattest.PathQRCode, f, 1)
		wg.Go(func() {
			resp, err := http.Post(s.URL+wechattest.PathQRCode, "application/json", strings.NewReader(`{"path":"p"}`))
			if err == nil {
				// Never read: Endless must be stopped by Close alone.
				<-closed
				resp.Body.Close()
			}
		})
		// One call at a time, so that each gets its own fault.
		for s.Calls(wechattest.PathQRCode) <= i {
			time.Sleep(time.Millisecond)
		}
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	close(closed)
	wg.Wait()
}

func TestCountersAndRequests(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	code(t, s, wechattest.PathWxaCode, tok, `{"path":"p"}`)
	code(t, s, wechattest.PathUnlimited, tok, `{"scene":"s"}`)
	s.Inject(wechattest.PathQRCode, wechattest.Fault{Reset: true}, 1)
	if resp, err := http.Post(s.URL+wechattest.PathQRCode, "application/json", strings.NewReader(`{}`)); err == nil {
		resp.Body.Close()
	}
	a := do(t, http.MethodGet, s.URL+"/nowhere", "")
	if a.status != http.StatusNotFound || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
		t.Errorf("unknown path: %d %q", a.status, a.header.Get("Content-Type"))
	}

	if got := [...]int{s.TokenCalls(), s.CodeCalls(), s.Calls(wechattest.PathQRCode), s.Calls("/nowhere")}; got != [...]int{1, 3, 1, 1} {
		t.Errorf("TokenCalls, CodeCalls, Calls(qrcode), Calls(/nowhere) = %v, want [1 3 1 1]", got)
	}
	reqs := s.Requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests recorded, want 5", len(reqs))
	}
	r := reqs[1]
	if r.Method != http.MethodPost || r.Path != wechattest.PathWxaCode || r.Query.Get("access_token") != tok || string(r.Body) != `{"path":"p"}` {
		t.Errorf("request recorded as %+v", r)
	}
	reqs[1].Body[0] = 'X'
	if s.Requests()[1].Body[0] != '{' {
		t.Error("Requests shares its bodies with the caller")
	}

	s.ResetCounters()
	if s.TokenCalls() != 0 || s.CodeCalls() != 0 || len(s.Requests()) != 0 {
		t.Error("ResetCounters left counts behind")
	}
	if s.Generated() != 1 || len(s.Tokens()) != 1 {
		t.Error("ResetCounters dropped tokens or generated codes")
	}
}

func TestOddInputs(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	bodies := []string{
		`null`, `[]`, `"x"`, `42`, `{"width":1e30}`, `{"width":4.5}`, `{"line_color":5}`,
		`{"line_color":{"r":-9,"g":999,"b":1}}`, "{\"path\":\"\xff\xfe\"}", `{"check_path":"yes"}`,
		`{"path":"p"} trailing`, strings.Repeat("[", 100000), `{"path":"p","extra":{"a":[1,2]}}`,
		strings.Repeat(" ", 1<<20+1) + `{}`,
		`{"path":"p\\u0026"}`, `{"path":"p\u00"}`, `{"path":"p\u0026`, `{"scene":"\\\u003e"}`,
	}
	for _, p := range []string{wechattest.PathQRCode, wechattest.PathWxaCode, wechattest.PathUnlimited, wechattest.PathStableToken} {
		for _, b := range bodies {
			a := code(t, s, p, tok, b)
			if a.status != http.StatusOK {
				t.Errorf("%s %.40q: status %d", p, b, a.status)
			}
			ct := a.header.Get("Content-Type")
			if ct == "image/jpeg" {
				continue
			}
			var e struct {
				ErrCode int `json:"errcode"`
			}
			if err := json.Unmarshal(a.body, &e); err != nil {
				t.Errorf("%s %.40q: %q %.100q", p, b, ct, a.body)
			}
		}
	}
	wantErr(t, code(t, s, wechattest.PathWxaCode, tok, strings.Repeat(" ", 1<<20+1)+`{"path":"p"}`), 47001)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetLimit(1000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				tok, _ := stable(t, s, i == 4 && g == 0)
				a := code(t, s, wechattest.PathWxaCode, tok, `{"path":"p`+strconv.Itoa(i)+`"}`)
				if a.status != http.StatusOK {
					t.Errorf("status %d", a.status)
				}
				s.Inject(wechattest.PathUnlimited, wechattest.Fault{ErrCode: -1}, 1)
				code(t, s, wechattest.PathUnlimited, tok, `{"scene":"s"}`)
				_ = s.Requests()
				_ = s.Generated()
				s.SetPages("pages/index/index")
			}
		})
	}
	wg.Wait()
	if n := s.Generated(); n != 5 {
		t.Errorf("Generated() = %d, want 5", n)
	}
	if n := s.CodeCalls(); n != 80 {
		t.Errorf("CodeCalls() = %d, want 80", n)
	}
}
