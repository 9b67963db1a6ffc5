package wechat

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// URLTokenSource gets tokens from a company's central token server: a GET
// of URL answered in WeChat's own shape, {"access_token","expires_in"}, or
// with a WeChat error {"errcode","errmsg"}. It never calls WeChat's token
// endpoints, so any number of services can share the server's token.
// Each Token call is one request, retried for passing failures: wrap it in
// a ReuseTokenSource, which reuses the token until shortly before it
// expires and backs off a server that keeps failing.
//
// When WeChat refuses a token (Invalidate), the server is asked again; if
// it hands back that very token, Token fails with ErrRefusedTokenAgain
// until the server has a new one.
//
// Errors name the URL's scheme, host and path, never its query or user
// info, which may carry a credential.
type URLTokenSource struct {
	// URL is the token server's address, http or https.
	URL string
	// Header is sent with every request, for the server's own
	// authentication (e.g. Authorization).
	Header http.Header
	// HTTPClient makes the requests; nil means one that follows no
	// redirects.
	HTTPClient *http.Client
	// Retries is how often a request that failed for a passing reason (the
	// connection failing, a 5xx, errcode -1) is retried within the
	// context; 0 means DefaultRetries, negative means never.
	Retries int
	// Backoff is the first wait before a retry, doubled each time; 0 means
	// DefaultBackoff.
	Backoff time.Duration
	// Observer, if set, is told of every request, as OpCentralToken.
	Observer Observer

	mu      sync.Mutex
	refused string // the token WeChat last refused
}

// ErrRefusedTokenAgain is returned by URLTokenSource when the token server
// hands back the token WeChat has just refused.
var ErrRefusedTokenAgain = errors.New("wechat: the token server handed back the access token WeChat refused; it must fetch a new one from WeChat")

// Token asks the server for its current token. Its errors are
// *TokenError, like those of WeChat's own token endpoints.
func (s *URLTokenSource) Token(ctx context.Context) (*Token, error) {
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("wechat: URLTokenSource.URL must be an http or https URL")
	}
	// The name in errors and the request's URL differ: only the latter
	// has the query and user info.
	name := u.Scheme + "://" + u.Host + u.EscapedPath()
	backoff := cmp.Or(s.Backoff, DefaultBackoff)
	retries := s.Retries
	if retries == 0 {
		retries = DefaultRetries
	}
	for try := 0; ; try++ {
		tok, err := s.fetch(ctx, u.String(), name)
		if err == nil {
			if tok, err = s.check(tok); err == nil {
				return tok, nil
			}
			return nil, &TokenError{Err: err}
		}
		if !transient(err) || try >= retries || sleepCtx(ctx, backoff) != nil {
			return nil, &TokenError{Err: err}
		}
		backoff *= 2
	}
}

func (s *URLTokenSource) fetch(ctx context.Context, rawURL, name string) (*Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, errors.New("wechat: URLTokenSource.URL is not a valid URL")
	}
	for k, vs := range s.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	data, _, err := send(s.HTTPClient, req, http.MethodGet, name, maxTokenReply)
	var tok *Token
	if err == nil {
		tok, err = parseTokenReply(data, start)
	}
	observe(s.Observer, OpCentralToken, start, err)
	return tok, err
}

// check refuses the token WeChat refused last.
func (s *URLTokenSource) check(tok *Token) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused != "" && tok.AccessToken == s.refused {
		return nil, ErrRefusedTokenAgain
	}
	return tok, nil
}

// Invalidate records that WeChat refused accessToken, so that the server
// handing it back is an error rather than a loop of refusals.
func (s *URLTokenSource) Invalidate(accessToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = accessToken
}

// Interface guards
var (
	_ TokenSource = (*URLTokenSource)(nil)
	_ Invalidator = (*URLTokenSource)(nil)
)
