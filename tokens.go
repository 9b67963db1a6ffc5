package wxqrcode

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// sharedTokens keeps an app's access token in the storage, so that every
// instance sharing the storage uses one token and only one of them, the
// holder of the storage's lock, asks WeChat for the next. With the classic
// endpoint, whose every call kills the previous token, that is what keeps
// instances from breaking each other.
type sharedTokens struct {
	storage certmagic.Storage
	key     string
	src     wechat.TokenSource
	faults  *faultLog

	mu      sync.Mutex
	refused string // the token WeChat last refused here
}

// tokenDoc is a token as the storage keeps it.
type tokenDoc struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
	Fetched     time.Time `json:"fetched"`
}

// recentFetch is how long a token just fetched is used without asking
// WeChat again, even in its early-refresh window: WeChat's stable endpoint
// may hand out the same token until it expires.
const recentFetch = time.Minute

// usable reports whether an instance should use the stored token rather
// than fetch one; never the one WeChat refused.
func (d *tokenDoc) usable(now time.Time, refused string) bool {
	if d == nil || d.AccessToken == "" || d.AccessToken == refused || !now.Before(d.Expiry) {
		return false
	}
	early := min(5*time.Minute, d.Expiry.Sub(d.Fetched)/10)
	return now.Before(d.Expiry.Add(-early)) || now.Sub(d.Fetched) < recentFetch
}

func (s *sharedTokens) load(ctx context.Context) *tokenDoc {
	raw, err := s.storage.Load(ctx, s.key)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.faults.warn("reading the shared token", zap.Error(err))
		}
		return nil
	}
	var d tokenDoc
	if json.Unmarshal(raw, &d) != nil {
		return nil
	}
	return &d
}

// Token returns the stored token, or fetches one under the storage's lock
// and stores it.
func (s *sharedTokens) Token(ctx context.Context) (*wechat.Token, error) {
	return s.obtain(ctx, s.src.Token)
}

// ForceRefresh replaces a stable token that WeChat refuses yet keeps
// handing out.
func (s *sharedTokens) ForceRefresh(ctx context.Context) (*wechat.Token, error) {
	fr, ok := s.src.(interface {
		ForceRefresh(context.Context) (*wechat.Token, error)
	})
	if !ok {
		return s.Token(ctx)
	}
	return s.obtain(ctx, fr.ForceRefresh)
}

func (s *sharedTokens) obtain(ctx context.Context, fetch func(context.Context) (*wechat.Token, error)) (*wechat.Token, error) {
	s.mu.Lock()
	refused := s.refused
	s.mu.Unlock()
	if d := s.load(ctx); d.usable(time.Now(), refused) {
		return &wechat.Token{AccessToken: d.AccessToken, Expiry: d.Expiry}, nil
	}
	if err := s.storage.Lock(ctx, s.key); err != nil {
		// Better a token of our own than none.
		s.faults.warn("locking the shared token; fetching one for this instance", zap.Error(err))
		return fetch(ctx)
	}
	defer func() {
		if err := s.storage.Unlock(context.WithoutCancel(ctx), s.key); err != nil {
			s.faults.warn("unlocking the shared token", zap.Error(err))
		}
	}()
	if d := s.load(ctx); d.usable(time.Now(), refused) {
		return &wechat.Token{AccessToken: d.AccessToken, Expiry: d.Expiry}, nil
	}
	tok, err := fetch(ctx)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(tokenDoc{AccessToken: tok.AccessToken, Expiry: tok.Expiry, Fetched: time.Now()})
	if err == nil {
		err = s.storage.Store(ctx, s.key, raw)
	}
	if err != nil {
		s.faults.warn("storing the shared token", zap.Error(err))
	}
	return tok, nil
}

// Invalidate removes a token that WeChat refused from the storage, if it
// is still the one there, and keeps it from being used again here: the
// stable endpoint may hand it out again, and then only a forced refresh
// replaces it.
func (s *sharedTokens) Invalidate(accessToken string) {
	s.mu.Lock()
	s.refused = accessToken
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.storage.Lock(ctx, s.key); err != nil {
		s.faults.warn("locking the shared token", zap.Error(err))
		return
	}
	defer func() { _ = s.storage.Unlock(context.WithoutCancel(ctx), s.key) }()
	if d := s.load(ctx); d != nil && d.AccessToken == accessToken {
		if err := s.storage.Delete(ctx, s.key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.faults.warn("removing the refused shared token", zap.Error(err))
		}
	}
}

// Interface guards
var (
	_ wechat.TokenSource = (*sharedTokens)(nil)
	_ wechat.Invalidator = (*sharedTokens)(nil)
)
