package wxqrcode

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "pages/a/b?x=1", true},
		{"pages/index/index", "pages/index/index", true},
		{"pages/index/index", "pages/index/index?x=1", false},
		{"pages/item/item?id=*", "pages/item/item?id=42", true},
		{"pages/item/item?id=*", "pages/item/item?id=", true},
		{"pages/item/item?id=*", "pages/item/itemXid=42", false},
		{"pages/*/index", "pages/a/b/index", true},
		{"pages/*/index", "pages/index", false},
		{"*?from=*", "pages/a?from=x", true},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"**", "x", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestParseColor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want *wechat.Color
		bad  bool
	}{
		{"", nil, false},
		{"0,0,0", nil, false},
		{"#000000", nil, false},
		{"255, 0,16", &wechat.Color{R: 255, B: 16}, false},
		{"#ff0010", &wechat.Color{R: 255, B: 16}, false},
		{"256,0,0", nil, true},
		{"-1,0,0", nil, true},
		{"1,2", nil, true},
		{"#fff", nil, true},
		{"red", nil, true},
	}
	for _, tt := range tests {
		got, err := parseColor(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("parseColor(%q) error %v", tt.in, err)
			continue
		}
		if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("parseColor(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// resolve runs resolveRequest for a provisioned-like handler and a URI.
func resolve(t *testing.T, h *Handler, uri string) (*codeRequest, error) {
	t.Helper()
	h.AppID = "wx1"
	h.resolveConfig()
	return h.resolveRequest(caddyhttp.NewTestReplacer(httptest.NewRequest("GET", uri, nil)))
}

func TestCanonicalRequest(t *testing.T) {
	t.Parallel()
	same := [][]string{
		{"qrcode", "/?path=a", "/?path=a&width=", "/?width=430&path=a", "/?path=a&other=1"},
		{"wxacode", "/?path=a", "/?path=a&hy=false&color=0,0,0", "/?path=a&color=%23000000&env=release"},
		{"wxacode", "/?path=a&auto=true", "/?path=a&auto=1&color=1,2,3"},
		{"unlimited", "/?scene=s", "/?scene=s&cp=true&width=430"},
	}
	keys := map[string]string{}
	for _, group := range same {
		var first string
		for _, uri := range group[1:] {
			h := &Handler{API: group[0]}
			if group[0] != apiQRCode {
				h.IsHyaline, h.LineColor, h.AutoColor = "{http.request.uri.query.hy}", "{http.request.uri.query.color}", "{http.request.uri.query.auto}"
				h.EnvVersion, h.CheckPath = "{http.request.uri.query.env}", "{http.request.uri.query.cp}"
			}
			cr, err := resolve(t, h, uri)
			if err != nil {
				t.Fatalf("%s %s: %v", group[0], uri, err)
			}
			if first == "" {
				first = cacheKey(cr.canonical)
				if other, dup := keys[cacheKey(cr.canonical)]; dup {
					t.Errorf("%s shares a key with %s", uri, other)
				}
				keys[cacheKey(cr.canonical)] = group[0] + uri
			} else if cacheKey(cr.canonical) != first {
				t.Errorf("%s %s: key differs (%s)", group[0], uri, cr.canonical)
			}
		}
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		api, uri string
		code     int
	}{
		{apiQRCode, "/?path=a&width=x", wechat.CodeInvalidArgs},
		{apiQRCode, "/?path=", wechat.CodePathLength},
		{apiWxaCode, "/?path=a&hy=maybe", wechat.CodeInvalidArgs},
		{apiWxaCode, "/?path=a&color=1,2,3,4", wechat.CodeInvalidArgs},
		{apiWxaCode, "/?path=a&env=beta", wechat.CodeInvalidArgs},
		{apiUnlimited, "/?scene=a&cp=perhaps", wechat.CodeInvalidArgs},
		{apiUnlimited, "/?scene=%E4%B8%AD", wechat.CodeSceneChars},
	}
	for _, tt := range tests {
		h := &Handler{API: tt.api}
		if tt.api != apiQRCode {
			h.IsHyaline, h.LineColor, h.EnvVersion = "{http.request.uri.query.hy}", "{http.request.uri.query.color}", "{http.request.uri.query.env}"
		}
		if tt.api == apiUnlimited {
			h.CheckPath = "{http.request.uri.query.cp}"
		}
		_, err := resolve(t, h, tt.uri)
		var werr *wechat.Error
		if !errors.As(err, &werr) || werr.Code != tt.code {
			t.Errorf("%s %s: got %v, want errcode %d", tt.api, tt.uri, err, tt.code)
		}
	}
}

// The canonical form is what the README tells signing backends: every
// effective parameter but the width, sorted, as url.Values.Encode writes
// them.
func TestCanonicalFormPinned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h    *Handler
		uri  string
		want url.Values
	}{
		{&Handler{API: apiWxaCode, AutoColor: "{http.request.uri.query.auto}", LineColor: "{http.request.uri.query.color}"},
			"/?path=pages%2Fa%3Fx%3D1%202&auto=true&color=1,2,3",
			url.Values{"api": {"wxacode"}, "appid": {"wx1"}, "auto_color": {"true"}, "env_version": {"release"},
				"is_hyaline": {"false"}, "line_color": {"auto"}, "path": {"pages/a?x=1 2"}}},
		{&Handler{API: apiWxaCode, LineColor: "{http.request.uri.query.color}", EnvVersion: "trial", IsHyaline: "true"},
			"/?path=p&color=%23010203&width=300",
			url.Values{"api": {"wxacode"}, "appid": {"wx1"}, "auto_color": {"false"}, "env_version": {"trial"},
				"is_hyaline": {"true"}, "line_color": {"1,2,3"}, "path": {"p"}}},
		{&Handler{API: apiUnlimited, CheckPath: "false"},
			"/?scene=id%3D1%26from%3D~%21&page=pages/item/item",
			url.Values{"api": {"unlimited"}, "appid": {"wx1"}, "auto_color": {"false"}, "check_path": {"false"},
				"env_version": {"release"}, "is_hyaline": {"false"}, "line_color": {"0,0,0"}, "page": {"pages/item/item"},
				"scene": {"id=1&from=~!"}}},
	}
	for _, tt := range tests {
		cr, err := resolve(t, tt.h, tt.uri)
		if err != nil {
			t.Fatalf("%s: %v", tt.uri, err)
		}
		if want := tt.want.Encode(); cr.canonical != want {
			t.Errorf("%s:\n got %s\nwant %s", tt.uri, cr.canonical, want)
		}
	}
}
