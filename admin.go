package wxqrcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the caddy wxqrcode commands from the running Caddy's
// admin endpoint, so that they see the config as it runs: its routes, its
// resolved credentials and keys, its storages.
//
//	POST /wxqrcode/sign   {"urls": [...]} → {"results": [signResult...]}
//	GET  /wxqrcode/stats  → {"storages": [storageStats...]}
//	POST /wxqrcode/purge  {"urls": [...]} or {"appid": ...} → purgeResponse
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.wxqrcode",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the wxqrcode endpoints.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/wxqrcode/sign", Handler: caddy.AdminHandlerFunc(a.handleSign)},
		{Pattern: "/wxqrcode/stats", Handler: caddy.AdminHandlerFunc(a.handleStats)},
		{Pattern: "/wxqrcode/purge", Handler: caddy.AdminHandlerFunc(a.handlePurge)},
	}
}

// signRequest is the body of POST /wxqrcode/sign.
type signRequest struct {
	URLs []string `json:"urls"`
}

type signResponse struct {
	Results []signResult `json:"results"`
}

// maxSignBatch bounds the URLs of one sign request; caddy wxqrcode
// prefetch sends signBatch at a time.
const maxSignBatch = 10000

// handleSign runs each URL through the running config's routes with a
// probe and answers with the signed URLs, or why each cannot be served.
func (adminAPI) handleSign(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: POST a list of URLs")}
	}
	var req signRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`want {"urls": [...]}: %v`, err)}
	}
	if len(req.URLs) > maxSignBatch {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("at most %d URLs at once", maxSignBatch)}
	}
	app, err := runningHTTPApp()
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	}
	res := signResponse{Results: make([]signResult, len(req.URLs))}
	for i, u := range req.URLs {
		res.Results[i] = probeURL(r.Context(), app, u, r.RemoteAddr)
	}
	return writeJSON(w, res)
}

// runningHTTPApp is the http app of the running config.
func runningHTTPApp() (*caddyhttp.App, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return nil, fmt.Errorf("the running config serves no HTTP: %v", err)
	}
	return app.(*caddyhttp.App), nil
}

type statsResponse struct {
	Storages []storageStats `json:"storages"`
}

// handleStats reads the storage of every running wxqrcode handler, each
// storage once.
func (adminAPI) handleStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: GET")}
	}
	res := statsResponse{Storages: []storageStats{}}
	for _, st := range runningStores() {
		res.Storages = append(res.Storages, readStats(r.Context(), st.storage))
	}
	return writeJSON(w, res)
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// handlers are the provisioned wxqrcode handlers, for the admin API's
// stats and purge: Provision adds a handler, Cleanup removes it.
var handlers = struct {
	sync.Mutex
	all map[*Handler]struct{}
}{all: map[*Handler]struct{}{}}

func registerHandler(h *Handler) {
	handlers.Lock()
	defer handlers.Unlock()
	handlers.all[h] = struct{}{}
}

func unregisterHandler(h *Handler) {
	handlers.Lock()
	defer handlers.Unlock()
	delete(handlers.all, h)
}

// store is a storage of the provisioned handlers, with the memory caches
// in front of it.
type store struct {
	id      string
	storage certmagic.Storage
	mems    []*memoryCache
}

// runningStores returns the storages of the provisioned handlers, one for
// each storeID: the handlers of a config sharing a storage, and those of
// the old and new config during a reload, use it once.
func runningStores() []*store {
	handlers.Lock()
	defer handlers.Unlock()
	byID := map[string]*store{}
	for h := range handlers.all {
		st := byID[h.storeID]
		if st == nil {
			st = &store{id: h.storeID, storage: h.cache.storage}
			byID[h.storeID] = st
		}
		if h.mem != nil && !slices.Contains(st.mems, h.mem) {
			st.mems = append(st.mems, h.mem)
		}
	}
	stores := make([]*store, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		stores = append(stores, byID[id])
	}
	return stores
}

// Interface guards
var _ caddy.AdminRouter = adminAPI{}
