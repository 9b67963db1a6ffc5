package wxqrcode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// tokenPool keeps token sources across config reloads, so a reload asks
// WeChat for no new token.
var tokenPool = caddy.NewUsagePool()

// pooledTokens lets a token source live in the UsagePool.
type pooledTokens struct{ *wechat.ReuseTokenSource }

func (pooledTokens) Destruct() error { return nil }

// openClient makes the WeChat client, with the token source of the
// handler's app, endpoint, secret and storage from the pool. The client's
// and token sources' nil HTTPClient follows no redirects: one would carry
// the token in the Referer, and a 307 the secret in the body, to another
// host.
func (h *Handler) openClient(storage certmagic.Storage) error {
	h.client = &wechat.Client{BaseURL: h.apiBase, Observer: metricsObserver{}}
	if h.token == tokenNone {
		h.client.Tokens = wechat.NoToken{}
		return nil
	}
	var newSource func() wechat.TokenSource
	if h.token == tokenURL {
		// Not kept in the storage: the token server is what every
		// instance shares, and it must hear of a refused token.
		h.tokKey = strings.Join([]string{tokenURL, h.tokenURL, digest(headerText(h.tokenHeader)), h.appID}, "|")
		newSource = func() wechat.TokenSource {
			return &wechat.URLTokenSource{URL: h.tokenURL, Header: h.tokenHeader, Observer: metricsObserver{}}
		}
	} else {
		creds := wechat.Credentials{BaseURL: h.apiBase, AppID: h.appID, Secret: h.secret, Observer: metricsObserver{}}
		var src wechat.TokenSource = &wechat.StableTokenSource{Credentials: creds}
		if h.token == tokenClassic {
			src = &wechat.ClassicTokenSource{Credentials: creds}
		}
		h.tokKey = strings.Join([]string{h.apiBase, h.appID, h.token, digest(h.secret), h.storeID}, "|")
		newSource = func() wechat.TokenSource {
			return newSharedTokens(storage, h.appID, h.token, src, h.faults)
		}
	}
	pooled, _, err := tokenPool.LoadOrNew(h.tokKey, func() (caddy.Destructor, error) {
		return pooledTokens{wechat.NewReuseTokenSource(newSource())}, nil
	})
	if err != nil {
		return err
	}
	h.client.Tokens = pooled.(pooledTokens).ReuseTokenSource
	return nil
}

// digest is the hex SHA-256 of a credential, to tell pooled sources apart
// without keeping the credential in their key.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// headerText is h in one canonical string.
func headerText(h http.Header) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			b.WriteString(name + ": " + v + "\n")
		}
	}
	return b.String()
}

// sharedTokens keeps an app's access token in the storage, so that every
// instance sharing the storage uses one token and only one of them, the
// holder of the storage's lock, asks WeChat for the next. With the classic
// endpoint, whose every call kills the previous token, that is what keeps
// instances from breaking each other.
type sharedTokens struct {
	storage certmagic.Storage
	// key and lockName are the token's document and lock in the storage.
	key, lockName string
	src           wechat.TokenSource
	faults        *faultLog
	now           func() time.Time

	mu      sync.Mutex
	refused string // the token WeChat last refused here
}

func newSharedTokens(storage certmagic.Storage, appID, mode string, src wechat.TokenSource, faults *faultLog) *sharedTokens {
	return &sharedTokens{
		storage: storage, key: layout.token(appID, mode), lockName: layout.tokenLock(appID, mode),
		src: src, faults: faults, now: time.Now,
	}
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

// tokenLockWait bounds a wait for the shared token's lock: as long as a
// holder's fetch may take.
const tokenLockWait = 10 * time.Second

// usable reports whether an instance should use the stored token rather
// than fetch one; never the one WeChat refused.
func (d *tokenDoc) usable(now time.Time, refused string) bool {
	if d == nil || d.AccessToken == "" || d.AccessToken == refused || !now.Before(d.Expiry) {
		return false
	}
	return now.Before(wechat.RefreshTime(d.Fetched, d.Expiry)) || now.Sub(d.Fetched) < recentFetch
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

func (s *sharedTokens) lock() storeLock {
	return storeLock{storage: s.storage, name: s.lockName, faults: s.faults}
}

// Token returns the stored token, or fetches one under the storage's lock
// and stores it.
func (s *sharedTokens) Token(ctx context.Context) (*wechat.Token, error) {
	return s.obtain(ctx, s.src.Token)
}

// ForceRefresh replaces a stable token that WeChat refuses yet keeps
// handing out.
func (s *sharedTokens) ForceRefresh(ctx context.Context) (*wechat.Token, error) {
	fr, ok := s.src.(wechat.ForceRefresher)
	if !ok {
		return s.Token(ctx)
	}
	return s.obtain(ctx, fr.ForceRefresh)
}

func (s *sharedTokens) obtain(ctx context.Context, fetch func(context.Context) (*wechat.Token, error)) (*wechat.Token, error) {
	s.mu.Lock()
	refused := s.refused
	s.mu.Unlock()
	stored := func() (*wechat.Token, bool) {
		d := s.load(ctx)
		if !d.usable(s.now(), refused) {
			return nil, false
		}
		return &wechat.Token{AccessToken: d.AccessToken, Expiry: d.Expiry}, true
	}
	if tok, ok := stored(); ok {
		return tok, nil
	}
	fetchAndStore := func() (*wechat.Token, error) {
		tok, err := fetch(ctx)
		if err != nil {
			return nil, err
		}
		s.store(ctx, tok)
		return tok, nil
	}
	tok, err := lockedDo(ctx, s.lock(), tokenLockWait, stored, fetchAndStore)
	if errors.Is(err, errNotLocked) {
		// Better a token of our own than none.
		s.faults.warn("locking the shared token; fetching one for this instance", zap.Error(err))
		return fetch(ctx)
	}
	return tok, err
}

func (s *sharedTokens) store(ctx context.Context, tok *wechat.Token) {
	raw, err := json.Marshal(tokenDoc{AccessToken: tok.AccessToken, Expiry: tok.Expiry, Fetched: s.now()})
	if err == nil {
		err = s.storage.Store(ctx, s.key, raw)
	}
	if err != nil {
		s.faults.warn("storing the shared token", zap.Error(err))
	}
}

// Invalidate removes a token that WeChat refused from the storage, if it
// is still the one there, and keeps it from being used again here: the
// stable endpoint may hand it out again, and then only a forced refresh
// replaces it.
func (s *sharedTokens) Invalidate(accessToken string) {
	s.mu.Lock()
	s.refused = accessToken
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), tokenLockWait)
	defer cancel()
	// Gone already, or replaced: nothing to remove.
	replaced := func() (struct{}, bool) {
		d := s.load(ctx)
		return struct{}{}, d == nil || d.AccessToken != accessToken
	}
	remove := func() (struct{}, error) {
		if err := s.storage.Delete(ctx, s.key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.faults.warn("removing the refused shared token", zap.Error(err))
		}
		return struct{}{}, nil
	}
	if _, err := lockedDo(ctx, s.lock(), tokenLockWait, replaced, remove); err != nil {
		s.faults.warn("locking the shared token", zap.Error(err))
	}
}

// Interface guards
var (
	_ wechat.TokenSource    = (*sharedTokens)(nil)
	_ wechat.Invalidator    = (*sharedTokens)(nil)
	_ wechat.ForceRefresher = (*sharedTokens)(nil)
)
