package wxqrcode

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// FuzzCaddyfile parses arbitrary wxqrcode blocks: never a panic, and a
// block that parses passes the same checks at load and marshals to JSON.
func FuzzCaddyfile(f *testing.F) {
	f.Add("{\n appid wx1\n secret s\n allow *\n}")
	f.Add("/qr {\n appid {env.A}\n secret {env.S}\n api wxacode\n line_color \"#ff0000\"\n is_hyaline {query.t}\n allow pages/*\n}")
	f.Add("{\n appid a\n secret s\n api unlimited\n scene {path.1}\n check_path false\n cap 5 per 1h\n cap 9\n}")
	f.Add("{\n appid a\n secret s\n sign_key 0123456789abcdef0123 k2\n storage file_system {\n root /x\n }\n}")
	f.Add("{\n appid a\n secret s\n timeout 3s\n width 2000\n}")
	f.Add("{\n cap 1 per\n api\n}")
	f.Fuzz(func(t *testing.T, block string) {
		tokens, err := caddyfile.Tokenize([]byte("wxqrcode "+block), "Caddyfile")
		if err != nil {
			return
		}
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		if err := h.checkConfig(); err != nil {
			t.Fatalf("parsed, then refused: %v", err)
		}
		if _, err := json.Marshal(h); err != nil {
			t.Fatalf("does not marshal: %v", err)
		}
	})
}

// FuzzResolveRequest feeds every template from an arbitrary query: never a
// panic; a request is refused as a 400 with WeChat's code, or resolves to
// a stable key that names no file.
func FuzzResolveRequest(f *testing.F) {
	f.Add(apiQRCode, "path=pages/item/item%3Fid%3D42&w=280")
	f.Add(apiWxaCode, "path=a&color=%23ff0000&hy=true&env=trial&auto=0")
	f.Add(apiWxaCode, "path=a&color=1,2,3&w=1280")
	f.Add(apiUnlimited, "scene=id%3D1&page=pages/item/item&cp=false")
	f.Add(apiUnlimited, "scene=../..&page=pages/../x")
	f.Add(apiQRCode, "path=a&path=b")
	f.Add(apiQRCode, "path=%00%FF&w=-1")
	f.Fuzz(func(t *testing.T, api, rawQuery string) {
		if checkValue("api", api) != nil || api == "" {
			return
		}
		h := &Handler{API: api, AppID: "wx1", Width: "{http.request.uri.query.w}"}
		if api != apiQRCode {
			h.LineColor, h.IsHyaline, h.AutoColor = "{http.request.uri.query.color}", "{http.request.uri.query.hy}", "{http.request.uri.query.auto}"
			h.EnvVersion = "{http.request.uri.query.env}"
		}
		if api == apiUnlimited {
			h.CheckPath = "{http.request.uri.query.cp}"
		}
		h.resolveConfig()
		parse := func() (*codeRequest, error) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.URL.RawQuery = rawQuery
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddyhttp.NewTestReplacer(r)))
			return h.parse(r)
		}
		cr, err := parse()
		if err != nil {
			var werr *wechat.Error
			if !errors.As(err, &werr) || problemFor(err).status != http.StatusBadRequest {
				t.Fatalf("refused with %v, not a 400 with WeChat's code", err)
			}
			return
		}
		if b, err := hex.DecodeString(cacheKey(cr.canonical)); err != nil || len(b) != 32 {
			t.Fatalf("key %q is not a hash", cacheKey(cr.canonical))
		}
		if _, err := url.ParseQuery(cr.canonical); err != nil {
			t.Fatalf("canonical %q does not parse", cr.canonical)
		}
		again, err := parse()
		if err != nil || again.key != cr.key || cr.key != cacheKey(cr.canonical) {
			t.Fatal("the same request resolved twice differently")
		}
	})
}
