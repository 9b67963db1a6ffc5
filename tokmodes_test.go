package wxqrcode_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// noSecretBlock is a wxqrcode block at matcher for the fake, with no
// secret: token url and none use none.
func noSecretBlock(fake *wechattest.Server, matcher, options string) string {
	return fmt.Sprintf(`wxqrcode %s {
		appid %s
		api_base %s
		%s
	}
	`, matcher, testAppID, fake.URL, strings.ReplaceAll(options, "\n", "\n\t\t"))
}

// assertGenericTokenError checks the 502 a visitor gets when the server
// has no token: WeChat's and the token server's detail stays in the log.
func assertGenericTokenError(t *testing.T, resp *http.Response, body []byte, errcode int) {
	t.Helper()
	assertError(t, resp, body, http.StatusBadGateway, errcode)
	if !strings.Contains(string(body), "could not get an access token") || strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("body %s, want the generic token message and no address", body)
	}
}

// token url: the tokens come from a central token server, asked with its
// header; WeChat's token endpoints are never called, and a token WeChat
// refuses sends the module back to the server, once per call.
func TestTokenURL(t *testing.T) {
	fake := newFake(t)
	fake.SetCentralAuth("Authorization", "Bearer central-key")
	t.Setenv("WXQRCODE_TEST_TOKEN_URL", fake.CentralTokenURL())
	t.Setenv("WXQRCODE_TEST_CENTRAL_KEY", "central-key")
	down := fmt.Sprintf("http://127.0.0.1:%d/token", freePort(t))
	s := startSite(t, fake, "", "metrics /metrics\n\t"+noSecretBlock(fake, "/qr", `token url {env.WXQRCODE_TEST_TOKEN_URL} {
	header Authorization "Bearer {env.WXQRCODE_TEST_CENTRAL_KEY}"
}
allow pages/*
cap 100000`)+
		// The same server without its header: refused with 401.
		noSecretBlock(fake, "/noauth", "token url "+fake.CentralTokenURL()+"\nallow pages/*\ncap 100000")+
		noSecretBlock(fake, "/down", "token url "+down+"\nallow pages/*\ncap 100000")+
		// Its own token source: another URL of the same server.
		noSecretBlock(fake, "/garbage", "token url "+fake.CentralTokenURL()+"?route=garbage\nallow pages/*\ncap 100000"))
	central := func() int { return fake.Calls(wechattest.PathCentralToken) }
	const fetched = `caddy_wxqrcode_token_fetches_total{endpoint="url",errcode="0"}`
	metricsBefore, _ := scrape(t, s)

	resp, body := s.get("/qr?path=pages/item/item%3Fid%3D1")
	assertImage(t, resp, body, "image/jpeg", 430)
	resp, body = s.get("/qr?path=pages/item/item%3Fid%3D2")
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := central(); n != 1 {
		t.Errorf("%d requests to the token server for two codes, want 1 (the token reused)", n)
	}
	if after, _ := scrape(t, s); after[fetched]-metricsBefore[fetched] != 1 {
		t.Errorf("%s went from %v to %v, want one more", fetched, metricsBefore[fetched], after[fetched])
	}

	fake.InvalidateTokens()
	before := fake.Calls(wechattest.PathQRCode)
	resp, body = s.get("/qr?path=pages/item/item%3Fid%3D3")
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := central(); n != 2 {
		t.Errorf("%d requests to the token server after WeChat refused its token, want 2", n)
	}
	if n := fake.Calls(wechattest.PathQRCode) - before; n != 2 {
		t.Errorf("%d calls for a code whose token was refused, want 2: the refused call and its one retry", n)
	}

	t.Run("no header", func(t *testing.T) {
		before := central()
		resp, body := s.get("/noauth?path=pages/item/item")
		assertGenericTokenError(t, resp, body, 990502)
		if central() == before {
			t.Error("the token server was not asked")
		}
	})
	t.Run("server down", func(t *testing.T) {
		resp, body := s.get("/down?path=pages/item/item")
		assertGenericTokenError(t, resp, body, 990502)
	})
	t.Run("garbage", func(t *testing.T) {
		fake.Inject(wechattest.PathCentralToken, wechattest.Fault{Garbage: true}, 0)
		defer fake.ClearFaults()
		resp, body := s.get("/garbage?path=pages/item/item")
		assertGenericTokenError(t, resp, body, 990502)
	})
	if n := fake.TokenCalls(); n != 0 {
		t.Errorf("%d calls to WeChat's token endpoints, want none", n)
	}
}

// token none: the calls carry no access_token, as WeChat Cloud Hosting's
// open API service takes them, and no token is ever asked for.
func TestTokenNone(t *testing.T) {
	fake := newFake(t)
	fake.SetNoToken(true)
	s := startSite(t, fake, "", noSecretBlock(fake, "/qr", "token none\nallow pages/*\ncap 100000"))
	resp, body := s.get("/qr?path=pages/item/item%3Fid%3D42")
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
	for _, r := range fake.Requests() {
		if r.Query.Has("access_token") {
			t.Errorf("%s %s carried an access_token", r.Method, r.Path)
		}
	}
	if n := fake.TokenCalls() + fake.Calls(wechattest.PathCentralToken); n != 0 {
		t.Errorf("%d token requests, want none", n)
	}

	// Where the platform does not vouch for the call, WeChat's 41001
	// reaches the visitor as a 502: no other token exists to try.
	fake.SetNoToken(false)
	resp, body = s.get("/qr?path=pages/item/item%3Fid%3D43")
	assertError(t, resp, body, http.StatusBadGateway, 41001)
}

// What each token mode takes at load, and the line a refusal names.
func TestTokenModesConfig(t *testing.T) {
	const site = "http://127.0.0.1:1 {\n\twxqrcode /qr {\n\t\tappid " + testAppID + "\n\t\tallow pages/item/item\n%s\t}\n}\n"
	tests := []struct {
		name, options, err string
	}{
		{"url, no secret", "\t\ttoken url https://tokens.example.com/wx\n", ""},
		{"url with a header", "\t\ttoken url https://tokens.example.com/wx {\n\t\t\theader Authorization \"Bearer {env.X}\"\n\t\t}\n", ""},
		{"url placeholder", "\t\ttoken url {env.WX_TOKEN_URL}\n", ""},
		{"none, http to WeChat", "\t\ttoken none\n\t\tapi_base http://api.weixin.qq.com\n", ""},
		{"url without a URL", "\t\ttoken url\n", "needs the token server's URL: token url <url>, at Caddyfile:5"},
		{"url not http", "\t\ttoken url ftp://tokens.example.com/wx\n", "token url must be an http or https URL, not \"ftp://tokens.example.com/wx\", at Caddyfile:5"},
		{"url hides its query", "\t\ttoken url ftp://tokens.example.com/wx?key=hush\n", "not \"ftp://tokens.example.com/wx?...\""},
		{"header without url", "\t\ttoken stable {\n\t\t\theader A b\n\t\t}\n", "go with token url only"},
		{"bad block", "\t\ttoken url https://t.example.com {\n\t\t\tauth x\n\t\t}\n", "unknown token option \"auth\""},
		{"unknown mode", "\t\ttoken cloud\n", "token must be stable, classic, url <url> or none"},
		{"stable needs the secret", "\t\ttoken stable\n", "secret is required"},
		{"http elsewhere needs token none", "\t\ttoken url https://t.example.com\n\t\tapi_base http://api.weixin.qq.com\n", "api_base needs https"},
		{"errors caddy", "\t\ttoken none\n\t\terrors caddy\n", ""},
		{"errors other", "\t\ttoken none\n\t\terrors html\n", "errors must be json or caddy, not \"html\", at Caddyfile:6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := adapt(fmt.Sprintf(site, tt.options))
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("got %v, want an error with %q", err, tt.err)
			}
			if err == nil && strings.Contains(tt.options, "header") && !strings.Contains(string(cfg), `"token_header":{"Authorization":["Bearer {env.X}"]}`) {
				t.Errorf("the JSON has no token_header: %s", cfg)
			}
			if err != nil && strings.Contains(err.Error(), "hush") {
				t.Errorf("the error shows the URL's query: %v", err)
			}
		})
	}
}

// A token server URL from a placeholder is checked once resolved.
func TestTokenURLResolved(t *testing.T) {
	t.Setenv("WXQRCODE_TEST_TOKEN_URL", "ftp://tokens.example.com/wx")
	cfg, err := adapt(caddyfile(t, freePort(t), t.TempDir(), "wxqrcode /qr {\n\t\tappid "+testAppID+
		"\n\t\ttoken url {env.WXQRCODE_TEST_TOKEN_URL}\n\t\tallow pages/item/item\n\t}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(configOf(t, cfg)); err == nil || !strings.Contains(err.Error(), `token url must be an http or https URL, not "ftp://tokens.example.com/wx"`) {
		t.Errorf("got %v, want the resolved URL refused", err)
	}
}

// errors caddy: failures go to the site's handle_errors, with the status
// and WeChat's errcode and message in {err.status_code} and {err.message}.
func TestErrorsCaddy(t *testing.T) {
	fake := newFake(t)
	down := fmt.Sprintf("http://127.0.0.1:%d/token", freePort(t))
	s := startSite(t, fake, "", qrBlock(fake, "errors caddy\nallow pages/*\ncap 100000")+
		noSecretBlock(fake, "/down", "token url "+down+"\nerrors caddy\nallow pages/*\ncap 100000")+
		`handle_errors {
		respond "{err.status_code} {err.message}" {err.status_code}
	}
	`)
	resp, body := s.get("/qr?path=pages/item/item")
	assertImage(t, resp, body, "image/jpeg", 430)

	tests := []struct {
		name, uri string
		fault     *wechattest.Fault
		status    int
		body      string
	}{
		{"not allowed", "/qr?path=admin/index", nil, 403, "403 errcode 990403: "},
		{"wechat's own", "/qr?path=pages/index/index%3Fa%3D1", &wechattest.Fault{ErrCode: 41030, ErrMsg: "invalid page rid: 1"}, 400, "400 errcode 41030: invalid page rid: 1"},
		{"rate", "/qr?path=pages/index/index%3Fa%3D2", &wechattest.Fault{ErrCode: 45011}, 429, "429 errcode 45011: "},
		{"token server down", "/down?path=pages/index/index%3Fdown", nil, 502, "502 errcode 990502: wxqrcode: the server could not get an access token; its log says why"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fault != nil {
				fake.Inject(wechattest.PathQRCode, *tt.fault, 1)
			}
			resp, body := s.get(tt.uri)
			if resp.StatusCode != tt.status || !strings.HasPrefix(string(body), tt.body) {
				t.Errorf("%d %q, want %d %q...", resp.StatusCode, body, tt.status, tt.body)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if tt.status == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "60" {
				t.Errorf("Retry-After %q, want 60", resp.Header.Get("Retry-After"))
			}
			if strings.Contains(string(body), "127.0.0.1") {
				t.Errorf("the message names an address: %s", body)
			}
		})
	}
}

// Credentials and sign keys from files, as container secrets are
// mounted: Caddy's {file.*} drops the one trailing newline.
func TestFileSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	appid, secret, key := write("appid", testAppID), write("secret", testSecret), write("sign_key", signKey)
	fake := newFake(t)
	s := startSite(t, fake, "", fmt.Sprintf(`wxqrcode /qr {
		appid {file.%s}
		secret {file.%s}
		sign_key {file.%s}
		api_base %s
	}
	`, appid, secret, key, fake.URL))
	path := "pages/item/item?id=42"
	canonical := url.Values{"api": {"qrcode"}, "appid": {testAppID}, "path": {path}}.Encode()
	resp, body := s.get("/qr?" + url.Values{"path": {path}, "sig": {hmacHex(signKey, canonical)}}.Encode())
	assertImage(t, resp, body, "image/jpeg", 430)
	resp, body = s.get("/qr?" + url.Values{"path": {path}, "sig": {hmacHex(signKey+"\n", canonical)}}.Encode())
	assertError(t, resp, body, http.StatusForbidden, 990412)
	if n := fake.TokenCalls(); n != 1 {
		t.Errorf("%d token calls, want 1: the fake took the secret without its newline", n)
	}
}
