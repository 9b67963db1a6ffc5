package wxqrcode

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// routeFinder finds the wxqrcode handler that serves a request, for the
// commands that sign URLs: it walks a config's routes as Caddy's HTTP app
// would, with the server listening on the URL's port, Caddy's own
// matchers, route groups, subroutes, terminal routes and rewrites.
type routeFinder struct {
	ctx     caddy.Context
	cancel  context.CancelFunc
	servers []finderServer
}

type finderServer struct {
	name   string
	listen []caddy.NetworkAddress
	routes []finderRoute
}

// finderRoute is a route with its matchers provisioned, and the steps of
// its handler chain that matter for finding the handler.
type finderRoute struct {
	route caddyhttp.Route
	steps []finderStep
}

// finderStep is one handler: exactly one field is set, or none for a
// handler that passes the request on untouched.
type finderStep struct {
	handler   *Handler
	subroute  []finderRoute
	rewrite   *rewrite.Rewrite
	responder string // a handler that answers itself: the chain ends here
}

// responders are standard handlers that answer without passing the request
// on, so a wxqrcode handler after them is never reached.
var responders = map[string]bool{
	"static_response": true, "reverse_proxy": true, "error": true, "file_server": true, "acme_server": true,
}

// newRouteFinder reads the JSON config raw and provisions its matchers.
func newRouteFinder(raw []byte) (*routeFinder, error) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string          `json:"listen"`
					Routes []json.RawMessage `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("reading the config: %v", err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	f := &routeFinder{ctx: ctx, cancel: cancel}
	names := make([]string, 0, len(cfg.Apps.HTTP.Servers))
	for name := range cfg.Apps.HTTP.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		srv := cfg.Apps.HTTP.Servers[name]
		fs := finderServer{name: name}
		for _, l := range srv.Listen {
			addr, err := caddy.ParseNetworkAddress(l)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("server %s: listen %q: %v", name, l, err)
			}
			fs.listen = append(fs.listen, addr)
		}
		routes, err := f.routes(srv.Routes)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("server %s: %v", name, err)
		}
		fs.routes = routes
		f.servers = append(f.servers, fs)
	}
	return f, nil
}

// Close releases the provisioned matchers.
func (f *routeFinder) Close() { f.cancel() }

func (f *routeFinder) routes(raws []json.RawMessage) ([]finderRoute, error) {
	var routes []finderRoute
	for i, raw := range raws {
		var fr finderRoute
		if err := json.Unmarshal(raw, &fr.route); err != nil {
			return nil, fmt.Errorf("route %d: %v", i, err)
		}
		if err := fr.route.ProvisionMatchers(f.ctx); err != nil {
			return nil, fmt.Errorf("route %d: %v", i, err)
		}
		for _, hraw := range fr.route.HandlersRaw {
			step, err := f.step(hraw)
			if err != nil {
				return nil, fmt.Errorf("route %d: %v", i, err)
			}
			fr.steps = append(fr.steps, step)
		}
		routes = append(routes, fr)
	}
	return routes, nil
}

func (f *routeFinder) step(raw json.RawMessage) (finderStep, error) {
	var head struct {
		Handler string            `json:"handler"`
		Routes  []json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return finderStep{}, fmt.Errorf("a handler: %v", err)
	}
	switch {
	case head.Handler == "wxqrcode":
		h := new(Handler)
		if err := json.Unmarshal(raw, h); err != nil {
			return finderStep{}, fmt.Errorf("wxqrcode: %v", err)
		}
		h.resolveConfig()
		return finderStep{handler: h}, nil
	case head.Handler == "subroute":
		routes, err := f.routes(head.Routes)
		return finderStep{subroute: routes}, err
	case head.Handler == "rewrite":
		rw := new(rewrite.Rewrite)
		if err := json.Unmarshal(raw, rw); err != nil {
			return finderStep{}, fmt.Errorf("rewrite: %v", err)
		}
		if err := rw.Provision(f.ctx); err != nil {
			return finderStep{}, fmt.Errorf("rewrite: %v", err)
		}
		return finderStep{rewrite: rw}, nil
	case responders[head.Handler]:
		return finderStep{responder: head.Handler}, nil
	}
	return finderStep{}, nil
}

// find returns the wxqrcode handler that serves r, a request from
// preparedRequest, applying the rewrites before it to r.
func (f *routeFinder) find(r *http.Request) (*Handler, error) {
	port := r.URL.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[r.URL.Scheme]
	}
	p, _ := strconv.ParseUint(port, 10, 32)
	original := r.URL.String()
	for _, srv := range f.servers {
		if !srv.listens(uint(p)) {
			continue
		}
		w := walk{repl: r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer), groups: map[string]bool{}}
		h, _, err := w.routes(srv.routes, r)
		if err != nil || h != nil {
			return h, err
		}
		break // the server on that port did not reach a wxqrcode handler
	}
	return nil, fmt.Errorf("no wxqrcode handler in the config serves %s", original)
}

func (s finderServer) listens(port uint) bool {
	for _, a := range s.listen {
		if a.StartPort <= port && port <= a.EndPort {
			return true
		}
	}
	return false
}

// walk is one request's way through the routes.
type walk struct {
	repl   *caddy.Replacer
	groups map[string]bool // route groups already satisfied
}

// routes returns the handler reached, or whether the chain ended first.
func (w walk) routes(routes []finderRoute, r *http.Request) (h *Handler, ended bool, err error) {
	for i := range routes {
		fr := &routes[i]
		if g := fr.route.Group; g != "" && w.groups[g] {
			continue
		}
		match, err := fr.route.MatcherSets.AnyMatchWithError(r)
		if err != nil {
			return nil, true, err
		}
		if !match {
			continue
		}
		if g := fr.route.Group; g != "" {
			w.groups[g] = true
		}
		for _, step := range fr.steps {
			switch {
			case step.handler != nil:
				return step.handler, true, nil
			case step.subroute != nil:
				if h, ended, err := w.routes(step.subroute, r); h != nil || ended || err != nil {
					return h, ended, err
				}
			case step.rewrite != nil:
				step.rewrite.Rewrite(r, w.repl)
			case step.responder != "":
				return nil, true, nil
			}
		}
		if fr.route.Terminal {
			return nil, true, nil
		}
	}
	return nil, false, nil
}
