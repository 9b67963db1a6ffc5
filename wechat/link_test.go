package wechat_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// The link calls' bodies, & and < unescaped as WeChat reads them.
func TestLinkWireShape(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	ctx := context.Background()
	target := wechat.LinkTarget{Path: "pages/item/item", Query: "id=42&from=sms", EnvVersion: wechat.EnvTrial}
	if _, err := c.GenerateURLLink(ctx, &wechat.URLLinkRequest{LinkTarget: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateScheme(ctx, &wechat.SchemeRequest{LinkTarget: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateShortLink(ctx, &wechat.ShortLinkRequest{PageURL: "pages/item/item?id=42&from=sms", Title: "<Sale>", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		wechattest.PathURLLink:   `{"path":"pages/item/item","query":"id=42&from=sms","env_version":"trial","expire_type":1,"expire_interval":30}`,
		wechattest.PathScheme:    `{"jump_wxa":{"path":"pages/item/item","query":"id=42&from=sms","env_version":"trial"},"is_expire":true,"expire_type":1,"expire_interval":30}`,
		wechattest.PathShortLink: `{"page_url":"pages/item/item?id=42&from=sms","page_title":"<Sale>","is_permanent":true}`,
	}
	for _, r := range fake.Requests() {
		if w, ok := want[r.Path]; ok && string(r.Body) != w {
			t.Errorf("%s: body %s, want %s", r.Path, r.Body, w)
		}
	}
}

func TestGenerateLinks(t *testing.T) {
	t.Parallel()
	_, c := newClient(t)
	ctx := context.Background()
	before := time.Now()
	l, err := c.GenerateURLLink(ctx, &wechat.URLLinkRequest{LinkTarget: wechat.LinkTarget{Path: "pages/index/index", Expire: 2 * time.Hour}})
	if err != nil || !strings.HasPrefix(l.URL, "https://wxaurl.cn/") || l.Expiry.Before(before.Add(2*time.Hour)) || l.Expiry.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("url link %+v, %v", l, err)
	}
	l, err = c.GenerateScheme(ctx, &wechat.SchemeRequest{})
	if err != nil || !strings.HasPrefix(l.URL, "weixin://dl/business/?t=") {
		t.Fatalf("scheme %+v, %v", l, err)
	}
	l, err = c.GenerateShortLink(ctx, &wechat.ShortLinkRequest{PageURL: "pages/index/index", Permanent: true})
	if err != nil || !strings.HasPrefix(l.URL, "#小程序://") || !l.Expiry.IsZero() {
		t.Fatalf("short link %+v, %v", l, err)
	}
}

// Inputs WeChat refuses are refused before any call, with WeChat's code;
// the fake refuses an escaped & as WeChat does.
func TestLinkValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		target wechat.LinkTarget
		code   int
	}{
		{wechat.LinkTarget{Path: "/pages/index/index"}, wechat.CodeInvalidPagePath},
		{wechat.LinkTarget{Path: "pages/index/index?a=1"}, wechat.CodeInvalidPagePath},
		{wechat.LinkTarget{Query: strings.Repeat("a", 1025)}, wechat.CodeInvalidQuery},
		{wechat.LinkTarget{Query: `a=\u0026`}, wechat.CodeInvalidQuery},
		{wechat.LinkTarget{EnvVersion: "beta"}, wechat.CodeInvalidEnvVersion},
		{wechat.LinkTarget{Expire: 31 * 24 * time.Hour}, wechat.CodeInvalidArgs},
	} {
		var werr *wechat.Error
		if err := tc.target.Validate(); !errors.As(err, &werr) || werr.Code != tc.code {
			t.Errorf("%+v: %v, want errcode %d", tc.target, err, tc.code)
		}
	}
	if err := (&wechat.ShortLinkRequest{}).Validate(); err == nil {
		t.Error("a short link with no page validated")
	}
	_, c := newClient(t)
	var werr *wechat.Error
	_, err := c.GenerateURLLink(context.Background(), &wechat.URLLinkRequest{LinkTarget: wechat.LinkTarget{Path: "pages/unknown/unknown"}})
	if !errors.As(err, &werr) || werr.Code != wechat.CodeInvalidPagePath {
		t.Errorf("unpublished page: %v, want 40165 from WeChat", err)
	}
}

// A reply that is not a link of the api's kind is not trusted.
func TestLinkBadReply(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	fake.Inject(wechattest.PathScheme, wechattest.Fault{Status: 200, Body: []byte(`{"errcode":0,"errmsg":"ok","openlink":"javascript:alert(1)"}`)}, 1)
	if _, err := c.GenerateScheme(context.Background(), &wechat.SchemeRequest{}); !errors.Is(err, wechat.ErrBadReply) {
		t.Errorf("%v, want ErrBadReply", err)
	}
}
