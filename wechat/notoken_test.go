package wechat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

func newNoTokenClient(t *testing.T) (*wechattest.Server, *wechat.Client) {
	t.Helper()
	fake := wechattest.NewServer(testAppID, testSecret)
	t.Cleanup(fake.Close)
	return fake, &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NoToken{}, Backoff: time.Millisecond}
}

func TestNoTokenCalls(t *testing.T) {
	t.Parallel()
	fake, c := newNoTokenClient(t)
	fake.SetNoToken(true)
	ctx := context.Background()
	if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetUnlimited(ctx, &wechat.UnlimitedRequest{Scene: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateOACode(ctx, &wechat.OACodeRequest{Scene: "s"}); err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.Query.Has("access_token") || len(r.Query) != 0 {
			t.Errorf("%s sent query %v, want none", r.Path, r.Query)
		}
	}
	if fake.TokenCalls() != 0 {
		t.Errorf("%d token calls, want 0", fake.TokenCalls())
	}
}

// With no token, a token error is WeChat's last word; passing failures are
// still retried.
func TestNoTokenErrors(t *testing.T) {
	t.Parallel()
	fake, c := newNoTokenClient(t)
	ctx := context.Background()
	_, err := c.CreateQRCode(ctx, qr("a"))
	var werr *wechat.Error
	if !errors.As(err, &werr) || werr.Code != wechat.CodeTokenMissing {
		t.Fatalf("want 41001 from a server that expects a token, got %v", err)
	}
	fake.SetNoToken(true)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeInvalidCredential}, 0)
	if _, err := c.CreateQRCode(ctx, qr("a")); !errors.As(err, &werr) || werr.Code != wechat.CodeInvalidCredential {
		t.Fatalf("want 40001, got %v", err)
	}
	if n := fake.CodeCalls(); n != 2 {
		t.Errorf("%d code calls, want 2: token errors are not retried", n)
	}
	fake.ClearFaults()
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: wechat.CodeBusy}, 1)
	if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
		t.Fatalf("want success after a busy reply, got %v", err)
	}
	if n := fake.CodeCalls(); n != 4 {
		t.Errorf("%d code calls, want 4: busy is retried", n)
	}
}

// NoToken has no token to give anyone but a Client.
func TestNoTokenWrapped(t *testing.T) {
	t.Parallel()
	if _, err := (wechat.NoToken{}).Token(context.Background()); !errors.Is(err, wechat.ErrNoToken) {
		t.Fatalf("want ErrNoToken, got %v", err)
	}
	fake, c := newNoTokenClient(t)
	fake.SetNoToken(true)
	c.Tokens = wechat.NewReuseTokenSource(wechat.NoToken{})
	if _, err := c.CreateQRCode(context.Background(), qr("a")); !errors.Is(err, wechat.ErrNoToken) {
		t.Fatalf("want ErrNoToken, got %v", err)
	}
	if fake.CodeCalls() != 0 {
		t.Error("a call was made without the token the Client was told to use")
	}
}
