package wechattest

import (
	"net/http"
	"time"
)

// PathCentralToken is the fake's central token server: not a WeChat path,
// but what a company's own token service answers, a GET with the app's
// current stable token in WeChat's shape.
const PathCentralToken = "/central/token"

// CentralTokenURL returns the URL of the fake's central token server.
func (s *Server) CentralTokenURL() string {
	return s.URL + PathCentralToken
}

// SetCentralAuth makes the central token server require the header name
// with value, answering 401 without it; an empty name requires nothing
// (the default).
func (s *Server) SetCentralAuth(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.centralAuth = [2]string{http.CanonicalHeaderKey(name), value}
}

// SetNoToken makes the code APIs accept calls without an access_token, as
// WeChat Cloud Hosting's open API service does for calls from its
// containers. A token that is sent is still checked. Off by default: a
// call without one gets 41001.
func (s *Server) SetNoToken(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noToken = on
}

// serveCentralToken hands out the stable token, issuing a new one when the
// current one is dead, as a central server fetching from
// /cgi-bin/stable_token would.
func (s *Server) serveCentralToken(in inbound) reply {
	if in.r.Method != http.MethodGet {
		return plainReply(http.StatusMethodNotAllowed, "method not allowed\n")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name := s.centralAuth[0]; name != "" && in.r.Header.Get(name) != s.centralAuth[1] {
		return plainReply(http.StatusUnauthorized, "unauthorized\n")
	}
	now := time.Now()
	cur := s.tokens[s.stableToken]
	if cur == nil || cur.check(now) != 0 {
		s.stableToken, cur = s.issueLocked(now)
	}
	return tokenReply(s.stableToken, cur.expires.Sub(now))
}

func plainReply(status int, body string) reply {
	return reply{
		status: status,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   []byte(body),
	}
}
