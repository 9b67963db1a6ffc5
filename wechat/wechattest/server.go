// Package wechattest provides an in-process fake of the WeChat mini-program
// code HTTP API, for tests, in the manner of net/http/httptest.
//
// The fake serves the access-token endpoints (/cgi-bin/stable_token and the
// classic /cgi-bin/token), the three code endpoints (createwxaqrcode,
// getwxacode and getwxacodeunlimit), the official account's parametric
// codes (/cgi-bin/qrcode/create) and a central token server of the kind a
// company runs in front of WeChat (/central/token) on 127.0.0.1 for a
// single app, and
// speaks WeChat's real wire shapes: errors are HTTP 200 with an
// {"errcode","errmsg"} JSON body whose errmsg ends in " rid: …", codes are
// HTTP 200 image bytes labelled image/jpeg (even the transparent ones, which
// are PNG), getwxacode reports the lifetime usage in a Num-Used header, and
// tokens expire, are superseded and are invalidated as WeChat does it.
// qrcode.create answers {"ticket","expire_seconds","url"} with a url of
// the form http://weixin.qq.com/q/<id>, counts permanent codes against a
// limit and clamps a temporary code's life to 30 days, as WeChat does.
// Token replies' expires_in is rounded up to whole seconds, so sub-second
// test lifetimes report 1, not 0.
//
// Images are cheap, deterministic block patterns derived from the request,
// so the same code always has the same bytes and distinct codes differ.
//
// Tests can shorten token lifetimes, lower the lifetime code budget and the
// permanent code limit, require a header at the central token server,
// accept calls without a token (WeChat Cloud Hosting), change the
// published pages, expire or invalidate every token, inspect every
// request received, and inject faults (delays, resets, hangs, error codes,
// HTTP errors, truncated, garbage, endless or trickled bodies) per path.
package wechattest

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Paths served by the fake, as in the real API.
const (
	PathStableToken = "/cgi-bin/stable_token"
	PathToken       = "/cgi-bin/token"
	PathQRCode      = "/cgi-bin/wxaapp/createwxaqrcode"
	PathWxaCode     = "/wxa/getwxacode"
	PathUnlimited   = "/wxa/getwxacodeunlimit"
)

const (
	defaultTokenTTL       = 7200 * time.Second
	defaultClassicOverlap = 5 * time.Minute
	defaultLimit          = 100000
	// maxBody bounds what a request may make the fake buffer; real bodies
	// are a few hundred bytes.
	maxBody = 1 << 20
)

// Server is a running fake. All its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:34567, with no trailing
	// slash.
	URL string

	ts        *httptest.Server
	appID     string
	secret    string
	done      chan struct{} // closed by Close to release blocked handlers
	closeOnce sync.Once

	mu             sync.Mutex
	tokenTTL       time.Duration
	classicOverlap time.Duration
	limit          int
	pages          map[string]bool
	tokens         map[string]*tokenState
	issued         []string
	stableToken    string // current token of /cgi-bin/stable_token
	classicToken   string // latest token of /cgi-bin/token
	generated      map[string]bool
	calls          map[string]int
	requests       []Request
	faults         map[string][]queuedFault
	centralAuth    [2]string // header name and value the central server requires
	noToken        bool
	permanentLimit int
	permanentCount int
	oaCodes        map[oaKey]*oaCode
}

// Request is a request received by the fake.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Body   []byte
}

// NewServer starts a fake on 127.0.0.1 for the app appID with the given
// secret. The caller must call Close.
func NewServer(appID, secret string) *Server {
	s := &Server{
		appID:          appID,
		secret:         secret,
		done:           make(chan struct{}),
		tokenTTL:       defaultTokenTTL,
		classicOverlap: defaultClassicOverlap,
		limit:          defaultLimit,
		pages:          map[string]bool{"pages/index/index": true, "pages/item/item": true},
		tokens:         map[string]*tokenState{},
		generated:      map[string]bool{},
		calls:          map[string]int{},
		faults:         map[string][]queuedFault{},
		permanentLimit: defaultPermanentLimit,
		oaCodes:        map[oaKey]*oaCode{},
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.ts.URL
	return s
}

// Close shuts the fake down. Handlers that are delaying, hanging, trickling
// or streaming are released first, so Close does not wait for them.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// SetTokenTTL sets the lifetime of tokens issued from now on
// (default 7200s).
func (s *Server) SetTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = d
}

// SetClassicOverlap sets how long a classic token stays valid once the next
// classic token is issued (default 5 minutes).
func (s *Server) SetClassicOverlap(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.classicOverlap = d
}

// SetLimit sets the lifetime budget of distinct codes from createQRCode and
// getwxacode (default 100000).
func (s *Server) SetLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = n
}

// SetPages replaces the set of published pages that getwxacodeunlimit
// checks when check_path is on (default "pages/index/index" and
// "pages/item/item").
func (s *Server) SetPages(pages ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages = make(map[string]bool, len(pages))
	for _, p := range pages {
		s.pages[p] = true
	}
}

// ExpireTokens makes every token issued so far expired (errcode 42001).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, t := range s.tokens {
		if t.expires.After(now) {
			t.expires = now
		}
	}
}

// InvalidateTokens makes every token issued so far invalid (errcode 40001).
func (s *Server) InvalidateTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.invalid = true
	}
}

// Calls reports how many requests arrived at path, whatever their method or
// outcome, faults included.
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// CodeCalls reports the requests received at the code paths: the three
// mini-program APIs and qrcode.create.
func (s *Server) CodeCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[PathQRCode] + s.calls[PathWxaCode] + s.calls[PathUnlimited] + s.calls[PathOACode]
}

// TokenCalls reports the requests received at the two token paths.
func (s *Server) TokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[PathStableToken] + s.calls[PathToken]
}

// Generated reports the distinct codes generated so far by createQRCode and
// getwxacode: the figure getwxacode sends as Num-Used.
func (s *Server) Generated() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.generated)
}

// Tokens returns every access token ever issued, oldest first, so tests can
// check that none leaks into logs or errors.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

// Requests returns every request received since the start or the last
// ResetCounters, in order of arrival.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = Request{Method: r.Method, Path: r.Path, Query: cloneValues(r.Query), Body: bytes.Clone(r.Body)}
	}
	return out
}

// ForceRefreshes returns the force_refresh flag of every request to the
// stable token endpoint, in order of arrival.
func (s *Server) ForceRefreshes() []bool {
	var forces []bool
	for _, r := range s.Requests() {
		if r.Path == PathStableToken {
			var body struct {
				ForceRefresh bool `json:"force_refresh"`
			}
			_ = json.Unmarshal(r.Body, &body)
			forces = append(forces, body.ForceRefresh)
		}
	}
	return forces
}

// ResetCounters forgets the calls and requests received so far; tokens and
// generated codes are kept.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.requests = nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// inbound is a received request with its body already read, so that it can
// be recorded and then answered, possibly after a fault's delay.
type inbound struct {
	r      *http.Request
	body   []byte
	bodyOK bool // false when the body could not be read whole
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	in := inbound{r: r, body: body, bodyOK: err == nil && len(body) <= maxBody}

	s.mu.Lock()
	s.calls[r.URL.Path]++
	s.requests = append(s.requests, Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.Query(),
		Body:   body,
	})
	f, faulted := s.popFaultLocked(r.URL.Path)
	s.mu.Unlock()

	if faulted {
		s.applyFault(w, in, f)
		return
	}
	writeReply(w, s.reply(in))
}

// reply computes the normal answer to a request.
func (s *Server) reply(in inbound) reply {
	switch in.r.URL.Path {
	case PathStableToken:
		return s.serveStableToken(in)
	case PathToken:
		return s.serveClassicToken(in)
	case PathQRCode:
		return s.serveQRCode(in)
	case PathWxaCode:
		return s.serveWxaCode(in)
	case PathUnlimited:
		return s.serveUnlimited(in)
	case PathOACode:
		return s.serveOACode(in)
	case PathCentralToken:
		return s.serveCentralToken(in)
	case PathURLLink:
		return s.serveURLLink(in)
	case PathScheme:
		return s.serveScheme(in)
	case PathShortLink:
		return s.serveShortLink(in)
	}
	return reply{
		status: http.StatusNotFound,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   []byte("404 page not found\n"),
	}
}

// reply is a complete HTTP answer, built before it is sent so that faults
// can send it truncated or slowly.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func writeReply(w http.ResponseWriter, rep reply) {
	h := w.Header()
	maps.Copy(h, rep.header)
	if bodyAllowed(rep.status) {
		h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	}
	w.WriteHeader(rep.status)
	// A write error means the client went away; there is nobody to tell.
	_, _ = w.Write(rep.body)
}

// bodyAllowed reports whether net/http lets a response with this status
// carry a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
