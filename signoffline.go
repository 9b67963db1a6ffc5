package wxqrcode

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// offlineHandler is a handler with the default templates that signs with
// key, checked as Provision and Validate check a route at load.
func offlineHandler(appID, api, key string) (*Handler, error) {
	h := &Handler{
		AppID: appID,
		API:   api,
		// Signing needs no secret; a stand-in lets Validate check the rest
		// as it would at load.
		Secret:  "unused",
		SignKey: []string{key},
	}
	h.resolveConfig()
	// The key as given: the route resolved its placeholders once, at load.
	h.signKeys, h.signKeyNames = []string{key}, []string{"the signing key"}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// signOffline checks rawURL as h would serve it and signs it with h's key.
func (h *Handler) signOffline(rawURL string) signResult {
	res := signResult{URL: rawURL}
	r, err := preparedRequest(rawURL)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	u := *r.URL
	cr, err := h.resolveFor(r)
	if err != nil {
		p := asProblem(err)
		res.Error, res.ErrCode = p.message, p.code
		return res
	}
	res.URL, res.Signed = signURL(&u, h.signKeys[0], cr.canonical).String(), true
	return res
}

// preparedRequest is a GET of rawURL as Caddy hands it to its routes.
func preparedRequest(rawURL string) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
		return nil, fmt.Errorf("want an http or https URL, not %q", strings.TrimSpace(rawURL))
	}
	r.RequestURI = r.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil), nil
}
