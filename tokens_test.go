package wxqrcode

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// A stable token that WeChat refuses yet keeps handing out is replaced by a
// forced refresh even through the storage, and no instance sharing the
// storage is given it again.
func TestSharedTokenRefusedIsForceRefreshed(t *testing.T) {
	t.Parallel()
	fake := wechattest.NewServer("wx0123456789abcdef", "secret")
	defer fake.Close()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	instance := func() *wechat.Client {
		src := &wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: "wx0123456789abcdef", Secret: "secret"}}
		shared := newSharedTokens(storage, "wx0123456789abcdef", tokenStable, src, newFaultLog(zap.NewNop()))
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
	if forces := fake.ForceRefreshes(); fmt.Sprint(forces) != "[false false true]" {
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

// countingSource issues a new token on each call, living two hours on the
// test's clock.
type countingSource struct {
	now   func() time.Time
	mu    sync.Mutex
	calls int
}

func (s *countingSource) Token(context.Context) (*wechat.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return &wechat.Token{AccessToken: fmt.Sprintf("token-%d", s.calls), Expiry: s.now().Add(2 * time.Hour)}, nil
}

// clock is a settable time for a test's now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// Instances sharing the storage use one token until it nears expiry, and
// then the first to ask fetches the next for all.
func TestSharedTokenExpiry(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	c := &clock{t: start}
	src := &countingSource{now: c.now}
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	var instances []*sharedTokens
	for range 2 {
		s := newSharedTokens(storage, "wx1", tokenStable, src, newFaultLog(zap.NewNop()))
		s.now = c.now
		instances = append(instances, s)
	}
	for _, step := range []struct {
		at    time.Duration
		want  string
		calls int
	}{
		{0, "token-1", 1},
		{time.Hour, "token-1", 1},
		// Five minutes before expiry: the early-refresh window.
		{115*time.Minute + time.Second, "token-2", 2},
		{3 * time.Hour, "token-2", 2},
		// Expired.
		{5 * time.Hour, "token-3", 3},
	} {
		c.set(start.Add(step.at))
		for i, s := range instances {
			tok, err := s.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != step.want {
				t.Errorf("at %v, instance %d has %s, want %s", step.at, i, tok.AccessToken, step.want)
			}
		}
		if src.calls != step.calls {
			t.Errorf("at %v, %d token fetches, want %d", step.at, src.calls, step.calls)
		}
	}
}
