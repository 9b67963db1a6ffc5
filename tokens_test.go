package wxqrcode

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// A stable token that WeChat refuses yet keeps handing out is replaced by a
// forced refresh even through the storage, and no instance sharing the
// storage is given it again.
func TestSharedTokenRefusedIsForceRefreshed(t *testing.T) {
	fake := wechattest.NewServer("wx0123456789abcdef", "secret")
	defer fake.Close()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	instance := func() *wechat.Client {
		src := &wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: "wx0123456789abcdef", Secret: "secret"}}
		shared := newSharedTokens(storage, "wxqrcode/tokens/wx0123456789abcdef/stable.json", src, newFaultLog(zap.NewNop()))
		return &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NewReuseTokenSource(shared)}
	}
	a, b := instance(), instance()
	ctx := context.Background()
	if _, err := a.CreateQRCode(ctx, &wechat.QRCodeRequest{Path: "a"}); err != nil {
		t.Fatal(err)
	}
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeInvalidCredential}, 1)
	if _, err := a.CreateQRCode(ctx, &wechat.QRCodeRequest{Path: "b"}); err != nil {
		t.Fatalf("want success after a forced refresh, got %v", err)
	}
	var forces []bool
	for _, r := range fake.Requests() {
		if r.Path == wechattest.PathStableToken {
			var body struct {
				ForceRefresh bool `json:"force_refresh"`
			}
			_ = json.Unmarshal(r.Body, &body)
			forces = append(forces, body.ForceRefresh)
		}
	}
	if fmt.Sprint(forces) != "[false false true]" {
		t.Errorf("force_refresh per token call %v, want [false false true]", forces)
	}
	// The other instance picks up the new token from the storage.
	if _, err := b.CreateQRCode(ctx, &wechat.QRCodeRequest{Path: "c"}); err != nil {
		t.Fatal(err)
	}
	if n := fake.TokenCalls(); n != 3 {
		t.Errorf("%d token calls, want 3", n)
	}
}
