package wechattest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// The link APIs answer in WeChat's shapes, a new link on every call, and
// refuse what WeChat refuses: an escaped \u0026 in a query is read as
// written, so it is refused as WeChat refuses it.
func TestLinks(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	for _, c := range []struct {
		path, body, field, prefix string
		errcode                   int
	}{
		{wechattest.PathURLLink, `{"path":"pages/item/item","query":"id=42&from=sms","expire_type":1,"expire_interval":30}`, "url_link", "https://wxaurl.cn/", 0},
		{wechattest.PathURLLink, `{"path":"pages/item/item","query":"id=42\u0026from=sms","expire_type":1,"expire_interval":30}`, "", "", 40212},
		{wechattest.PathURLLink, `{"path":"pages/nope/nope","query":"","expire_type":1,"expire_interval":30}`, "", "", 40165},
		{wechattest.PathURLLink, `{"path":"","query":"","env_version":"beta","expire_type":1,"expire_interval":30}`, "", "", 85402},
		{wechattest.PathURLLink, `{"path":"","query":"","expire_type":1,"expire_interval":31}`, "", "", 40097},
		{wechattest.PathScheme, `{"jump_wxa":{"path":"pages/item/item","query":"id=42"},"is_expire":true,"expire_type":1,"expire_interval":30}`, "openlink", "weixin://dl/business/?t=", 0},
		{wechattest.PathShortLink, `{"page_url":"pages/item/item?id=42","page_title":"Sale","is_permanent":false}`, "link", "#小程序://", 0},
		{wechattest.PathShortLink, `{"page_url":"pages/item/item?id=42\u0026a=1","page_title":"","is_permanent":true}`, "", "", 40212},
	} {
		a := code(t, s, c.path, tok, c.body)
		var m map[string]any
		if err := json.Unmarshal(a.body, &m); err != nil {
			t.Fatalf("%s %s: %s", c.path, c.body, a.body)
		}
		if got := int(m["errcode"].(float64)); got != c.errcode {
			t.Errorf("%s %s: errcode %d, want %d", c.path, c.body, got, c.errcode)
		}
		if link, _ := m[c.field].(string); c.errcode == 0 && !strings.HasPrefix(link, c.prefix) {
			t.Errorf("%s: %s, want %s %s...", c.path, a.body, c.field, c.prefix)
		}
	}
	if n := s.LinkCalls(); n != 8 {
		t.Errorf("%d link calls, want 8", n)
	}
}
