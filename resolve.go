package wxqrcode

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// resolved is what the wxqrcode handler that serves a URL makes of it,
// found without running any handler: the admin API signs and purges with
// it.
type resolved struct {
	handler *Handler
	// url is the URL as given, parsed.
	url *url.URL
	// canonical is the code's canonical request; sig its signature under
	// the handler's first sign_key, empty without sign_key.
	canonical, sig string
	// refused is what the handler would answer instead of a code.
	refused *problem
}

// resolveURL finds the wxqrcode handler of rawURL in app, the one named
// name, or else the first whose route's matchers match the URL (by host
// and path, in any server), and resolves the URL's templates and checks
// (inputs, allow; not the signature) as that handler would serve it. It
// runs no handler: it evaluates the matchers (which fill {re.*}) and
// applies the rewrites in front of the handler (handle_path's prefix
// stripping), so that the handler sees the request it would see.
// It returns why no handler was found, or "".
func resolveURL(app *caddyhttp.App, rawURL, name string) (*resolved, string) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "want an absolute http or https URL"
	}
	var answered string
	var found []handlerAt
	for _, srvName := range slices.Sorted(maps.Keys(app.Servers)) {
		srv := app.Servers[srvName]
		w := &routeWalk{name: name, r: routedRequest(u, srv)}
		w.walk(srv.Routes)
		if w.err != nil {
			return nil, fmt.Sprintf("the routes' matchers fail on it: %v", w.err)
		}
		found = append(found, w.found...)
		if name == "" && len(found) > 0 {
			break
		}
		answered = cmp.Or(answered, w.answered)
	}
	switch {
	case len(found) == 0 && name != "":
		return nil, fmt.Sprintf("no wxqrcode handler is named %q in the running config's routes", name)
	case len(found) > 1:
		return nil, fmt.Sprintf("%d wxqrcode handlers are named %q: give each a name of its own", len(found), name)
	case len(found) == 0 && answered != "":
		return nil, "no wxqrcode handler serves it: " + answered
	case len(found) == 0:
		return nil, "no wxqrcode handler's route matches it; name one with --name"
	}
	h, r := found[0].handler, found[0].r
	res := &resolved{handler: h, url: u}
	cr, err := h.resolveFor(r)
	if err != nil {
		res.refused = asProblem(err)
		return res, ""
	}
	res.canonical = cr.canonical
	if len(h.signKeys) > 0 {
		res.sig = sign(h.signKeys[0], cr.canonical)
	}
	return res, ""
}

// routedRequest is a GET of u as srv hands it to its routes: an https
// URL looks like a TLS connection to its host, and the client is the
// loopback (what the admin API's caller is, or should be).
func routedRequest(u *url.URL, srv *caddyhttp.Server) *http.Request {
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       u.Host,
		RequestURI: u.RequestURI(),
		RemoteAddr: "127.0.0.1:0",
	}
	if u.Scheme == "https" {
		r.TLS = &tls.ConnectionState{HandshakeComplete: true}
		if net.ParseIP(u.Hostname()) == nil {
			r.TLS.ServerName = u.Hostname()
		}
	}
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, srv)
}

// handlerAt is a wxqrcode handler found in the routes, with the request
// as it would reach it.
type handlerAt struct {
	handler *Handler
	r       *http.Request
}

// routeWalk walks routes as a server would route r, evaluating matchers
// and applying rewrites but running no handler, to the wxqrcode handler
// named name, or, with no name, the first one r reaches.
type routeWalk struct {
	name string
	r    *http.Request
	// groups are the route groups (handle blocks) a route matched in.
	groups map[string]bool
	found  []handlerAt
	// answered says what answers r before any wxqrcode handler, if a
	// respond or abort does.
	answered string
	err      error
}

// walk walks routes, and reports whether the walk ends there.
func (w *routeWalk) walk(routes caddyhttp.RouteList) bool {
	for _, rt := range routes {
		if w.name == "" && rt.Group != "" && w.groups[rt.Group] {
			continue
		}
		matched, err := rt.MatcherSets.AnyMatchWithError(w.r)
		if err != nil {
			w.err = err
			return true
		}
		if w.name != "" && !matched && namedIn(rt.Handlers, w.name) == 0 {
			continue
		}
		if w.name == "" && !matched {
			continue
		}
		if rt.Group != "" {
			if w.groups == nil {
				w.groups = map[string]bool{}
			}
			w.groups[rt.Group] = true
		}
		if w.handlers(rt.Handlers, matched) {
			return true
		}
		if w.name == "" && rt.Terminal {
			return true
		}
	}
	return false
}

// handlers walks the handlers of a route, and reports whether the walk
// ends there. A route that did not match is walked (by name only) for
// the named handler in it, without its rewrites.
func (w *routeWalk) handlers(hs []caddyhttp.MiddlewareHandler, matched bool) bool {
	for _, mh := range hs {
		switch h := mh.(type) {
		case *Handler:
			if w.name == "" || h.Name == w.name {
				w.found = append(w.found, handlerAt{handler: h, r: w.r})
				if w.name == "" {
					return true
				}
			}
		case *caddyhttp.Subroute:
			if w.walk(h.Routes) {
				return true
			}
		case *rewrite.Rewrite:
			if matched {
				h.Rewrite(w.r, w.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer))
			}
		case *caddyhttp.StaticResponse:
			if w.name != "" {
				continue
			}
			if h.Abort {
				w.answered = "the routes abort the request first"
			} else {
				w.answered = fmt.Sprintf("the routes answer %s first", cmp.Or(string(h.StatusCode), "200"))
			}
			return true
		}
	}
	return false
}

// namedIn counts the wxqrcode handlers named name in hs and the
// subroutes among them.
func namedIn(hs []caddyhttp.MiddlewareHandler, name string) int {
	n := 0
	for _, mh := range hs {
		switch h := mh.(type) {
		case *Handler:
			if h.Name == name {
				n++
			}
		case *caddyhttp.Subroute:
			for _, rt := range h.Routes {
				n += namedIn(rt.Handlers, name)
			}
		}
	}
	return n
}

// validName reports whether s may name a handler: letters, digits, '.',
// '_' and '-', as a command line and a log take it unquoted.
func validName(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// asProblem is the answer a handler gives for err, as it fails a request.
func asProblem(err error) *problem {
	if p, ok := err.(*problem); ok {
		return p
	}
	return problemFor(err)
}
