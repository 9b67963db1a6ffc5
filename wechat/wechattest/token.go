package wechattest

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"
)

// tokenState is the lifecycle of one issued access token.
type tokenState struct {
	expires   time.Time
	invalidAt time.Time // when a superseded classic token dies; zero: never
	invalid   bool      // replaced by force_refresh or InvalidateTokens
}

// check returns the errcode a code API gives for this token now, or 0.
// Invalidation wins over expiry, as a replaced token is unknown to WeChat.
func (t *tokenState) check(now time.Time) int {
	if t.invalid || (!t.invalidAt.IsZero() && !now.Before(t.invalidAt)) {
		return 40001
	}
	if !now.Before(t.expires) {
		return 42001
	}
	return 0
}

// issueLocked mints a token shaped like WeChat's: a long opaque string of
// [A-Za-z0-9_-].
func (s *Server) issueLocked(now time.Time) (string, *tokenState) {
	raw := make([]byte, 96)
	// crypto/rand.Read never fails.
	_, _ = rand.Read(raw)
	tok := base64.RawURLEncoding.EncodeToString(raw)
	st := &tokenState{expires: now.Add(s.tokenTTL)}
	s.tokens[tok] = st
	s.issued = append(s.issued, tok)
	return tok, st
}

// tokenReply is the success answer of both token endpoints. expires_in is
// the remaining lifetime rounded up to whole seconds, so a live token never
// reports 0 even when tests use sub-second lifetimes.
func tokenReply(tok string, remaining time.Duration) reply {
	secs := int64(0)
	if remaining > 0 {
		secs = int64((remaining + time.Second - 1) / time.Second)
	}
	return jsonReply(struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}{tok, secs})
}

// checkCredentials returns the errcode for a token request's credentials,
// or 0 when they name the configured app.
func (s *Server) checkCredentials(grantType, appID, secret string) int {
	switch {
	case grantType != "client_credential":
		return 40002
	case appID != s.appID:
		return 40013
	case secret != s.secret:
		return 40125
	}
	return 0
}

// serveStableToken answers /cgi-bin/stable_token: the current token is
// handed out again until it dies, unless force_refresh replaces it, which
// kills the old one at once.
func (s *Server) serveStableToken(in inbound) reply {
	if in.r.Method != http.MethodPost {
		return errReply(43002, "")
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if !in.decode(&req) {
		return errReply(47001, "")
	}
	if code := s.checkCredentials(req.GrantType, req.AppID, req.Secret); code != 0 {
		return errReply(code, "")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	cur := s.tokens[s.stableToken]
	if !req.ForceRefresh && cur != nil && cur.check(now) == 0 {
		return tokenReply(s.stableToken, cur.expires.Sub(now))
	}
	if cur != nil {
		cur.invalid = true
	}
	tok, st := s.issueLocked(now)
	s.stableToken = tok
	return tokenReply(tok, st.expires.Sub(now))
}

// serveClassicToken answers /cgi-bin/token: every call mints a new token and
// the previous one survives only for the classic overlap.
func (s *Server) serveClassicToken(in inbound) reply {
	if in.r.Method != http.MethodGet {
		return errReply(43001, "")
	}
	q := in.r.URL.Query()
	if code := s.checkCredentials(q.Get("grant_type"), q.Get("appid"), q.Get("secret")); code != 0 {
		return errReply(code, "")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if prev := s.tokens[s.classicToken]; prev != nil {
		deadline := now.Add(s.classicOverlap)
		if prev.invalidAt.IsZero() || deadline.Before(prev.invalidAt) {
			prev.invalidAt = deadline
		}
	}
	tok, st := s.issueLocked(now)
	s.classicToken = tok
	return tokenReply(tok, st.expires.Sub(now))
}

// authorize returns the errcode a code API gives for the request's
// access_token, or 0 when it is live, or absent in no-token mode.
func (s *Server) authorize(in inbound) int {
	tok := in.r.URL.Query().Get("access_token")
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok == "" {
		if s.noToken {
			return 0
		}
		return 41001
	}
	st := s.tokens[tok]
	if st == nil {
		return 40001
	}
	return st.check(time.Now())
}
