package wechat

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Token is an access token and when it expires.
type Token struct {
	AccessToken string
	// Expiry is when WeChat stops accepting the token.
	Expiry time.Time
}

// String hides the token so that printing one by mistake leaks nothing.
func (t *Token) String() string { return "wechat.Token(redacted)" }

// GoString hides the token from %#v as well.
func (t *Token) GoString() string { return t.String() }

// A TokenSource returns an access token. Callers of a Client never see how
// it is obtained or refreshed.
type TokenSource interface {
	Token(ctx context.Context) (*Token, error)
}

// An Invalidator drops a token that WeChat has refused, if it is still the
// token it would hand out, so that the next Token call gets a fresh one.
type Invalidator interface {
	Invalidate(accessToken string)
}

// A ForceRefresher can replace a token that WeChat still hands out
// although the code APIs refuse it. ReuseTokenSource uses it when its
// source hands back the token it invalidated.
type ForceRefresher interface {
	ForceRefresh(ctx context.Context) (*Token, error)
}

// RefreshTime is when a token fetched at fetched and expiring at expiry
// should be replaced: a tenth of its life, at most five minutes, before it
// expires, when WeChat already hands out the next stable token.
func RefreshTime(fetched, expiry time.Time) time.Time {
	return expiry.Add(-min(maxEarlyRefresh, expiry.Sub(fetched)/10))
}

// Credentials are what a token endpoint of WeChat needs: the app and where
// to ask.
type Credentials struct {
	BaseURL    string // default DefaultBaseURL
	AppID      string
	Secret     string
	HTTPClient *http.Client // default: one that follows no redirects
	Observer   Observer     // if set, told of every request
}

// StableTokenSource gets tokens from /cgi-bin/stable_token, which returns
// the same token for its whole life, so instances sharing an app never
// invalidate each other's token. Each Token call is one request: wrap it in
// a ReuseTokenSource.
type StableTokenSource struct {
	Credentials
}

// Token returns the app's current stable token.
func (s *StableTokenSource) Token(ctx context.Context) (*Token, error) {
	return s.fetch(ctx, false)
}

// ForceRefresh makes WeChat issue a new stable token and kill the old one.
// WeChat allows this 20 times a day, 30 seconds apart.
func (s *StableTokenSource) ForceRefresh(ctx context.Context) (*Token, error) {
	return s.fetch(ctx, true)
}

func (s *StableTokenSource) fetch(ctx context.Context, force bool) (*Token, error) {
	body, err := marshalBody(map[string]any{
		"grant_type":    "client_credential",
		"appid":         s.AppID,
		"secret":        s.Secret,
		"force_refresh": force,
	})
	if err != nil {
		return nil, err
	}
	return fetchToken(ctx, s.HTTPClient, s.Observer, OpStableToken, http.MethodPost, baseURL(s.BaseURL), pathStableToken, nil, body)
}

// ClassicTokenSource gets tokens from /cgi-bin/token, which issues a new
// token on every call and kills the previous one five minutes later: only
// one instance per app may use it. Wrap it in a ReuseTokenSource.
type ClassicTokenSource struct {
	Credentials
}

// Token returns a newly issued token.
func (s *ClassicTokenSource) Token(ctx context.Context) (*Token, error) {
	q := url.Values{"grant_type": {"client_credential"}, "appid": {s.AppID}, "secret": {s.Secret}}
	return fetchToken(ctx, s.HTTPClient, s.Observer, OpToken, http.MethodGet, baseURL(s.BaseURL), pathToken, q, nil)
}

// fetchToken asks a token endpoint; its errors are *TokenError.
func fetchToken(ctx context.Context, hc *http.Client, o Observer, op, method, base, path string, query url.Values, body []byte) (*Token, error) {
	start := time.Now()
	data, _, err := roundTrip(ctx, hc, method, base, path, query, body, maxTokenReply)
	var tok *Token
	if err == nil {
		tok, err = parseTokenReply(data, start)
	}
	observe(o, op, start, err)
	if err != nil {
		return nil, &TokenError{Err: err}
	}
	return tok, nil
}

// parseTokenReply reads a token endpoint's reply; start is when the
// request was sent, from which expires_in counts.
func parseTokenReply(data []byte, start time.Time) (*Token, error) {
	var reply struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		ErrCode     int    `json:"errcode"`
		ErrMsg      string `json:"errmsg"`
	}
	if json.Unmarshal(data, &reply) != nil {
		return nil, ErrBadReply
	}
	if reply.ErrCode != 0 {
		return nil, &Error{Code: reply.ErrCode, Message: reply.ErrMsg, Body: data}
	}
	if reply.AccessToken == "" || reply.ExpiresIn <= 0 {
		return nil, ErrBadReply
	}
	// WeChat says 7200; a wild value must not overflow into the past.
	expiresIn := min(reply.ExpiresIn, maxExpiresIn)
	return &Token{AccessToken: reply.AccessToken, Expiry: start.Add(time.Duration(expiresIn) * time.Second)}, nil
}

// maxExpiresIn bounds a token's lifetime, in seconds.
const maxExpiresIn = 24 * 60 * 60

// maxTokenReply bounds a token reply, which is a few hundred bytes.
const maxTokenReply = 64 << 10

// ReuseTokenSource hands out its source's token until shortly before it
// expires, with at most one refresh in flight however many callers wait.
type ReuseTokenSource struct {
	src TokenSource

	// FetchTimeout bounds one refresh, which runs on its own so that a
	// caller giving up does not fail the others waiting for it.
	FetchTimeout time.Duration

	group singleflight.Group
	now   func() time.Time

	mu        sync.Mutex
	tok       *Token
	refreshAt time.Time
	dropped   string    // the token most recently invalidated
	forcedAt  time.Time // the last forced refresh
	// After a failed refresh, callers get its error until retryAt, so
	// that a failing endpoint sees a handful of requests, not one each.
	lastErr  error
	retryAt  time.Time
	failWait time.Duration
}

// NewReuseTokenSource wraps src so that its tokens are reused.
func NewReuseTokenSource(src TokenSource) *ReuseTokenSource {
	return &ReuseTokenSource{src: src, FetchTimeout: 10 * time.Second, now: time.Now}
}

// maxEarlyRefresh is how long before expiry a token is replaced at most;
// WeChat hands out the next stable token in the last five minutes.
const maxEarlyRefresh = 5 * time.Minute

// minForceInterval is WeChat's spacing for forced stable token refreshes.
const minForceInterval = 30 * time.Second

// The backoff after failed refreshes: the first wait, doubled up to the
// last.
const (
	minFailWait = 250 * time.Millisecond
	maxFailWait = 30 * time.Second
)

// Token returns the cached token, or waits for the one refresh in flight.
func (r *ReuseTokenSource) Token(ctx context.Context) (*Token, error) {
	r.mu.Lock()
	now := r.now()
	if r.tok != nil && now.Before(r.refreshAt) {
		tok := r.tok
		r.mu.Unlock()
		return tok, nil
	}
	if now.Before(r.retryAt) {
		tok, err := r.tok, r.lastErr
		r.mu.Unlock()
		if tok != nil && now.Before(tok.Expiry) {
			return tok, nil
		}
		return nil, err
	}
	r.mu.Unlock()

	ch := r.group.DoChan("", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.FetchTimeout)
		defer cancel()
		return r.refresh(fctx)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Token), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *ReuseTokenSource) refresh(ctx context.Context) (*Token, error) {
	r.mu.Lock()
	if r.tok != nil && r.now().Before(r.refreshAt) {
		tok := r.tok // a refresh that finished while this one queued
		r.mu.Unlock()
		return tok, nil
	}
	dropped, old := r.dropped, r.tok
	r.mu.Unlock()

	tok, err := r.src.Token(ctx)
	if err == nil {
		tok, err = r.replaceRefused(ctx, tok, dropped)
	}
	if err != nil {
		r.mu.Lock()
		r.failWait = min(max(2*r.failWait, minFailWait), maxFailWait)
		r.retryAt = r.now().Add(r.failWait)
		r.lastErr = err
		r.mu.Unlock()
		// Refreshing early leaves time: a token not yet expired still works.
		if old != nil && r.now().Before(old.Expiry) {
			return old, nil
		}
		return nil, err
	}

	r.mu.Lock()
	r.tok = tok
	r.refreshAt = RefreshTime(r.now(), tok.Expiry)
	r.dropped = ""
	r.failWait, r.retryAt, r.lastErr = 0, time.Time{}, nil
	r.mu.Unlock()
	return tok, nil
}

// replaceRefused returns tok, or a forced refresh's token when tok is the
// one the code APIs refused: a stable token source keeps handing that out.
func (r *ReuseTokenSource) replaceRefused(ctx context.Context, tok *Token, dropped string) (*Token, error) {
	fr, ok := r.src.(ForceRefresher)
	if !ok || dropped == "" || tok.AccessToken != dropped {
		return tok, nil
	}
	r.mu.Lock()
	now := r.now()
	allowed := now.Sub(r.forcedAt) >= minForceInterval
	if allowed {
		r.forcedAt = now
	}
	r.mu.Unlock()
	if !allowed {
		// Too soon to force another: this token is the best there is, and
		// if WeChat refuses it again, its own error reaches the client.
		return tok, nil
	}
	return fr.ForceRefresh(ctx)
}

// Invalidate drops accessToken if it is still the current token, and only
// then: a caller holding an older token must not throw away a newer one. A
// source that caches tokens itself is told too.
func (r *ReuseTokenSource) Invalidate(accessToken string) {
	r.mu.Lock()
	current := r.tok != nil && r.tok.AccessToken == accessToken
	if current {
		r.tok = nil
		r.dropped = accessToken
	}
	r.mu.Unlock()
	if inv, ok := r.src.(Invalidator); ok && current {
		inv.Invalidate(accessToken)
	}
}

// Interface guards
var (
	_ TokenSource    = (*StableTokenSource)(nil)
	_ ForceRefresher = (*StableTokenSource)(nil)
	_ TokenSource    = (*ClassicTokenSource)(nil)
	_ TokenSource    = (*ReuseTokenSource)(nil)
	_ Invalidator    = (*ReuseTokenSource)(nil)
)
