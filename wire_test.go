package wxqrcode_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	wxqrcode "github.com/wxqrcode/caddy-wxqrcode"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// WeChat reads the body's strings as written: a scene a=1&b=2 and paths
// holding &, < and > reach it byte for byte, and each code scans to
// exactly what was asked. The fake, like WeChat, refuses \u0026 in a
// scene and keeps it in a path, so an HTML-escaping client fails here.
func TestBodiesAsWritten(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "",
		qrBlock(fake, "cap 100")+
			wxBlock(fake, "/wxa", "api wxacode\ncap 100")+
			wxBlock(fake, "/poster", "api unlimited\npage pages/item/item\ncap 100 per 1m")+
			wxBlock(fake, "/oa", "api oa_temporary\ncap 100 per 1m")+
			wxBlock(fake, "/oap", "api oa_permanent\ncap 100"))
	const path = "pages/item/item?id=1&from=poster&tag=<new>"
	tests := []struct {
		name, uri, upstream, raw, content string
	}{
		{"qrcode", "/qr?path=" + url.QueryEscape(path), wechattest.PathQRCode, `"path":"` + path + `"`, path},
		{"wxacode", "/wxa?path=" + url.QueryEscape(path), wechattest.PathWxaCode, `"path":"` + path + `"`, path},
		{"unlimited", "/poster?scene=" + url.QueryEscape("a=1&b=2"), wechattest.PathUnlimited, `"scene":"a=1&b=2"`,
			wechattest.UnlimitedContent("pages/item/item", "a=1&b=2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.get(tt.uri)
			assertImage(t, resp, body, "image/jpeg", 430)
			if got, err := wxqrcode.ScanCode(body); got != tt.content {
				t.Errorf("the code scans as %q (%v), want %q", got, err, tt.content)
			}
			assertSent(t, fake, tt.upstream, tt.raw)
		})
	}
	for name, permanent := range map[string]bool{"oa_temporary": false, "oa_permanent": true} {
		t.Run(name, func(t *testing.T) {
			const scene = "a=1&b=<2>"
			uri := "/oa?scene="
			if permanent {
				uri = "/oap?scene="
			}
			resp, body := s.get(uri + url.QueryEscape(scene))
			issued := fake.OAURL(scene, permanent)
			if issued == "" {
				t.Fatalf("WeChat issued no code for the scene %q: %d %s", scene, resp.StatusCode, body)
			}
			assertOACode(t, resp, body, 430, issued)
			action := "QR_STR_SCENE"
			if permanent {
				action = "QR_LIMIT_STR_SCENE"
			}
			assertSent(t, fake, wechattest.PathOACode, `"action_name":"`+action+`","action_info":{"scene":{"scene_str":"`+scene+`"}}`)
		})
	}
}

// assertSent checks that some body sent to upstream holds raw, byte for
// byte.
func assertSent(t *testing.T, fake *wechattest.Server, upstream, raw string) {
	t.Helper()
	for _, r := range fake.Requests() {
		if r.Path == upstream && bytes.Contains(r.Body, []byte(raw)) {
			return
		}
	}
	var sent [][]byte
	for _, r := range fake.Requests() {
		if r.Path == upstream {
			sent = append(sent, r.Body)
		}
	}
	t.Errorf("no body sent to %s holds %s; sent %q", upstream, raw, sent)
}

// The fake keeps an escaped & in a path as the six characters written,
// as WeChat does: the code holds them.
func TestFakeKeepsEscapesInPath(t *testing.T) {
	fake := newFake(t)
	tok := fakeToken(t, fake)
	resp, err := http.Post(fake.URL+wechattest.PathQRCode+"?access_token="+url.QueryEscape(tok), "application/json",
		strings.NewReader(`{"path":"pages/item/item?id=1\u0026from=poster","width":430}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	const want = `pages/item/item?id=1\u0026from=poster`
	if got, err := wxqrcode.ScanCode(body); got != want {
		t.Errorf("the code scans as %q (%v), want %q", got, err, want)
	}
}

func fakeToken(t *testing.T, fake *wechattest.Server) string {
	t.Helper()
	src := &wechat.StableTokenSource{Credentials: wechat.Credentials{AppID: testAppID, Secret: testSecret, BaseURL: fake.URL}}
	tok, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}
