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
// resolved credentials and keys, its storages. Its wire types are in
// adminapi.go.
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

// handleSign resolves each URL as the wxqrcode handler that serves it
// would (resolveURL) and answers with the signed URLs, or why each cannot
// be served.
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
	if req.Name != "" && !validName(req.Name) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("name may hold only letters, digits, '.', '_' and '-'")}
	}
	app, err := runningHTTPApp()
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	}
	res := signResponse{Results: make([]signResult, len(req.URLs))}
	for i, u := range req.URLs {
		res.Results[i] = signResolved(app, u, req.Name)
	}
	return writeJSON(w, res)
}

// signResolved says what the handler that serves rawURL makes of it.
func signResolved(app *caddyhttp.App, rawURL, name string) signResult {
	res := signResult{URL: rawURL}
	rs, why := resolveURL(app, rawURL, name)
	switch {
	case why != "":
		res.Error = why
	case rs.refused != nil:
		res.Error, res.ErrCode = rs.refused.message, rs.refused.code
	case rs.sig != "":
		res.URL, res.Signed = withSig(rs.url, rs.sig).String(), true
	}
	return res
}

// runningHTTPApp is the http app of the running config.
func runningHTTPApp() (*caddyhttp.App, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return nil, fmt.Errorf("the running config serves no HTTP: %v", err)
	}
	return app.(*caddyhttp.App), nil
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

// handlePurge removes the code each URL is served, or every code of an
// app, from the storages and memory caches of the running handlers. It
// leaves the counts of generated codes alone.
func (adminAPI) handlePurge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: POST the URLs or the appid to purge")}
	}
	var req purgeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`want {"urls": [...]} or {"appid": ...}: %v`, err)}
	}
	switch {
	case (len(req.URLs) > 0) == (req.AppID != ""):
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`want either {"urls": [...]} or {"appid": ...}`)}
	case len(req.URLs) > maxSignBatch:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("at most %d URLs at once", maxSignBatch)}
	case req.AppID != "" && !validAppID(req.AppID):
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("appid may hold only letters, digits, _ and -")}
	case req.AppID != "" && req.Name != "":
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("name picks the handler of URLs: an appid's codes are purged from every storage")}
	case req.Name != "" && !validName(req.Name):
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("name may hold only letters, digits, '.', '_' and '-'")}
	}
	if req.AppID != "" {
		res := purgeResponse{Storages: []purged{}}
		for _, st := range runningStores() {
			res.Storages = append(res.Storages, st.purgeApp(r.Context(), req.AppID))
		}
		return writeJSON(w, res)
	}
	app, err := runningHTTPApp()
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	}
	stores := map[string]*store{}
	for _, st := range runningStores() {
		stores[st.id] = st
	}
	res := purgeResponse{Results: make([]purgeResult, len(req.URLs)), Storages: []purged{}}
	totals := map[string]int{} // index in res.Storages by storage name
	for i, u := range req.URLs {
		pr := purgeResult{URL: u}
		rs, why := resolveURL(app, u, req.Name)
		switch {
		case why != "":
			pr.Error = why
		case rs.refused != nil:
			pr.Error, pr.ErrCode = rs.refused.message, rs.refused.code
		case stores[rs.handler.storeID] == nil:
			pr.Error = "the handler that serves it is being unloaded: try again"
		default:
			st := stores[rs.handler.storeID]
			pr.Storage = storageName(st.storage)
			var err error
			pr.Stored, pr.Memory, err = st.purgeCode(r.Context(), rs.canonical)
			if err != nil {
				pr.Error = err.Error()
			}
			n, ok := totals[pr.Storage]
			if !ok {
				n = len(res.Storages)
				totals[pr.Storage] = n
				res.Storages = append(res.Storages, purged{Storage: pr.Storage})
			}
			if pr.Stored {
				res.Storages[n].Codes++
			}
			res.Storages[n].Memory += pr.Memory
		}
		res.Results[i] = pr
	}
	return writeJSON(w, res)
}
