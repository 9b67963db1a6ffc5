package wxqrcode

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// probeKey carries a *probe in a request's context. Its type is
// unexported, so only this package can set it: no request from the
// network carries a probe, whatever its headers.
type probeKey struct{}

// probe asks the wxqrcode handler a request reaches what it would make of
// the request, instead of serving it. The admin API runs a request through
// a server's own routes with a probe, so that Caddy's matchers, groups,
// subroutes and rewrites find the handler, as they do for visitors.
type probe struct {
	reached bool
	// sig is the request's signature under the handler's first sign_key;
	// empty when the handler has no sign_key.
	sig string
	// refused is what the handler would answer instead of a code.
	refused *problem
	// handler and canonical are the handler reached and the canonical
	// request it resolved, for caddy wxqrcode purge.
	handler   *Handler
	canonical string
}

// probed answers the probe r carries, if any, and reports whether it
// did. It resolves and checks r as the handler would serve it (templates,
// inputs, allow; not the signature, which is what the probe is for), and
// records the outcome without fetching, counting or writing anything.
func (h *Handler) probed(r *http.Request) bool {
	p, ok := r.Context().Value(probeKey{}).(*probe)
	if !ok {
		return false
	}
	p.reached = true
	p.handler = h
	cr, err := h.resolveFor(r)
	if err != nil {
		p.refused = asProblem(err)
		return true
	}
	p.canonical = cr.canonical
	if len(h.signKeys) > 0 {
		p.sig = sign(h.signKeys[0], cr.canonical)
	}
	return true
}

// asProblem is the answer a handler gives for err, as it fails a request.
func asProblem(err error) *problem {
	if p, ok := err.(*problem); ok {
		return p
	}
	return problemFor(err)
}

// signResult is what the running config makes of one URL.
type signResult struct {
	// URL is the URL to ask for: with its sig when the route that serves
	// it has sign_key, else as it was given.
	URL string `json:"url"`
	// Signed tells that the route has sign_key and URL carries its
	// signature.
	Signed bool `json:"signed,omitempty"`
	// Error says why no code would be served for the URL; ErrCode is the
	// errcode the route would answer with, 0 when no wxqrcode handler
	// serves the URL.
	Error   string `json:"error,omitempty"`
	ErrCode int    `json:"errcode,omitempty"`
}

// probeURL runs rawURL through the routes of app with a probe and says
// what the wxqrcode handler that serves it would make of it.
func probeURL(ctx context.Context, app *caddyhttp.App, rawURL, remoteAddr string) signResult {
	res := signResult{URL: rawURL}
	p, u, why := probeRoute(ctx, app, rawURL, remoteAddr)
	switch {
	case why != "":
		res.Error = why
	case p.refused != nil:
		res.Error, res.ErrCode = p.refused.message, p.refused.code
	case p.sig != "":
		res.URL, res.Signed = withSig(u, p.sig).String(), true
	}
	return res
}

// probeRoute runs a GET of rawURL through the server of app listening on
// the URL's port, with a probe, and returns the probe and the URL, or why
// no wxqrcode handler serves it. The handlers before that one run as for
// a visitor; remoteAddr is the client address the routes see.
func probeRoute(ctx context.Context, app *caddyhttp.App, rawURL, remoteAddr string) (p *probe, u *url.URL, why string) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, "want an absolute http or https URL"
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	srv := serverOn(app, u.Hostname(), port)
	if srv == nil {
		return nil, nil, fmt.Sprintf("no server of the running config listens on port %s", port)
	}
	p = new(probe)
	r, err := http.NewRequestWithContext(context.WithValue(ctx, probeKey{}, p), http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, err.Error()
	}
	r.RequestURI = u.RequestURI()
	r.RemoteAddr = remoteAddr
	if u.Scheme == "https" {
		// What the routes would see of a TLS connection to the URL's host.
		r.TLS = &tls.ConnectionState{HandshakeComplete: true}
		if net.ParseIP(u.Hostname()) == nil {
			r.TLS.ServerName = u.Hostname()
		}
	}
	w := &probeWriter{header: http.Header{}}
	switch aborted := serveProbe(srv, w, r); {
	case aborted:
		return nil, nil, "no wxqrcode handler serves it: the routes abort the request first"
	case !p.reached:
		return nil, nil, fmt.Sprintf("no wxqrcode handler serves it: the routes answer %d first", w.code())
	}
	return p, u, ""
}

// serveProbe serves r, reporting a request the routes abort (the abort
// directive panics with http.ErrAbortHandler to drop the connection).
func serveProbe(srv *caddyhttp.Server, w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			aborted = true
		}
	}()
	srv.ServeHTTP(w, r)
	return false
}

// serverOn returns the server of app with a listener on port that takes
// connections to host, or nil.
func serverOn(app *caddyhttp.App, host, port string) *caddyhttp.Server {
	hostIP := net.ParseIP(host)
	for _, name := range slices.Sorted(maps.Keys(app.Servers)) {
		srv := app.Servers[name]
		for _, ln := range srv.Listeners() {
			lnHost, lnPort, err := net.SplitHostPort(ln.Addr().String())
			if err != nil || lnPort != port {
				continue
			}
			// A listener bound to one address takes only connections to it.
			if ip := net.ParseIP(lnHost); hostIP != nil && ip != nil && !ip.IsUnspecified() && !ip.Equal(hostIP) {
				continue
			}
			return srv
		}
	}
	return nil
}

// probeWriter takes the answer of routes that did not reach a wxqrcode
// handler, keeping only its status.
type probeWriter struct {
	header http.Header
	status int
}

func (w *probeWriter) Header() http.Header { return w.header }

func (w *probeWriter) WriteHeader(status int) {
	if w.status == 0 && status >= http.StatusOK {
		w.status = status
	}
}

func (w *probeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

// code is the status of the answer: routes that write nothing answer an
// empty 200.
func (w *probeWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
