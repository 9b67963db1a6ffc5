package wxqrcode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func purgeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "purge [--address <admin address> | --config <file> [--adapter <name>]] <url>... | purge [...] --appid <appid> --all",
		Short: "Removes codes from the cache",
		Long: `
Removes codes from the cache of the running Caddy, so that the next request
for each asks WeChat again: for example a code made with the wrong
env_version or colour.

With URLs, it removes the code each URL is served (every width of it): the
running Caddy finds the wxqrcode handler and the code of each URL as
caddy wxqrcode sign does, through its own routes, and removes the code from
that handler's storage and from the memory caches in front of it. A URL
needs no signature here.

With --appid <appid> --all, it removes every code of the app from every
storage the running wxqrcode handlers use, and from their memory caches.

It prints what it removed per storage. Counts of generated codes are left
as they are: a purged code asked for again is a new call to WeChat, which
WeChat does not count again for qrcode and wxacode, but the route's caps
and the generated count do. Other instances of a cluster keep the code in
their memory until it is evicted or they restart: purge through each
one's admin endpoint. Browsers and CDNs keep what they were served (a
year, immutable).

The admin endpoint is found as caddy stop finds it: --address, else the
admin listener of the config given by --config, else localhost:2019. The
exit status is 1 when a URL or a storage fails.

Examples:

  caddy wxqrcode purge 'https://posters.example.com/poster/A1B2C3.png'
  caddy wxqrcode purge --address localhost:2019 --appid wx0123456789abcdef --all
`,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			all, _ := flags.GetBool("all")
			appID, _ := flags.GetString("appid")
			var req purgeRequest
			switch {
			case all && len(args) > 0:
				return fmt.Errorf("--all purges every code of the app: give no URL with it")
			case all && appID == "":
				return fmt.Errorf("--all needs --appid, the app whose codes to purge")
			case all:
				if !validAppID(appID) {
					return fmt.Errorf("--appid may hold only letters, digits, _ and - (WeChat appids look like wx0123456789abcdef)")
				}
				req.AppID = appID
			case flags.Changed("appid"):
				return fmt.Errorf("--appid purges every code of the app: say --all too, or give URLs instead")
			case len(args) == 0:
				return fmt.Errorf("give the URLs of the codes to purge, or --appid <appid> --all")
			default:
				req.URLs = args
			}
			addr, err := adminAddress(cmd)
			if err != nil {
				return err
			}
			var res purgeResponse
			if err := adminCall(addr, http.MethodPost, "/wxqrcode/purge", req, &res); err != nil {
				return err
			}
			if res.Error != "" {
				return errors.New(res.Error)
			}
			return res.print(cmd.OutOrStdout(), cmd.ErrOrStderr(), req)
		},
	}
	addAdminFlags(c)
	c.Flags().String("appid", "", "with --all: the app whose codes to purge")
	c.Flags().Bool("all", false, "purge every code of --appid")
	return c
}

// purgeRequest is the body of POST /wxqrcode/purge: URLs, or an app.
type purgeRequest struct {
	URLs  []string `json:"urls,omitempty"`
	AppID string   `json:"appid,omitempty"`
}

// purgeResponse says what a purge removed.
type purgeResponse struct {
	// Results has one result per URL, in order.
	Results []purgeResult `json:"results,omitempty"`
	// Storages has what was removed per storage.
	Storages []purged `json:"storages"`
	// Error says why nothing was purged; the admin API's own errors
	// answer in this field too.
	Error string `json:"error,omitempty"`
}

// purgeResult is what a purge did for one URL.
type purgeResult struct {
	URL string `json:"url"`
	// Storage names the storage of the handler that serves the URL.
	Storage string `json:"storage,omitempty"`
	// Stored tells that the code was in the storage; Memory counts the
	// memory cache entries removed, the master and its widths.
	Stored bool `json:"stored,omitempty"`
	Memory int  `json:"memory,omitempty"`
	// Error says why the code was not purged, with the errcode the route
	// would answer, 0 when no wxqrcode handler serves the URL.
	Error   string `json:"error,omitempty"`
	ErrCode int    `json:"errcode,omitempty"`
}

// purged is what a purge removed from one storage and its memory caches.
type purged struct {
	Storage string `json:"storage"`
	Codes   int    `json:"codes"`
	Memory  int    `json:"memory"`
	Error   string `json:"error,omitempty"`
}

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
		p, _, why := probeRoute(r.Context(), app, u, r.RemoteAddr)
		switch {
		case why != "":
			pr.Error = why
		case p.refused != nil:
			pr.Error, pr.ErrCode = p.refused.message, p.refused.code
		case stores[p.handler.storeID] == nil:
			pr.Error = "the handler that serves it is being unloaded: try again"
		default:
			st := stores[p.handler.storeID]
			pr.Storage = storageName(st.storage)
			var err error
			pr.Stored, pr.Memory, err = st.purgeCode(r.Context(), p.canonical)
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

// purgeCode removes the code of canonical from the storage, then from the
// memory caches, so that no request in between puts it back in memory
// from the storage.
func (st *store) purgeCode(ctx context.Context, canonical string) (stored bool, memory int, err error) {
	key := cacheKey(canonical)
	// Exists first: some storages delete a missing key without an error.
	if st.storage.Exists(ctx, layout.code(key)) {
		err = st.storage.Delete(ctx, layout.code(key))
		stored = err == nil
		if err != nil {
			err = fmt.Errorf("removing the code from the storage: %v", err)
		}
	}
	memory = st.purgeMemory(func(k string) bool {
		return k == canonical || strings.HasPrefix(k, canonical+"#")
	})
	caddy.Log().Named("admin.api.wxqrcode").Info("purged code",
		zap.String("key", key),
		zap.Bool("stored", stored),
		zap.Int("memory_entries", memory),
		zap.Error(err))
	return stored, memory, err
}

// purgeApp removes every code of appID from the storage, then from the
// memory caches.
func (st *store) purgeApp(ctx context.Context, appID string) purged {
	res := purged{Storage: storageName(st.storage)}
	keys, err := layout.codes(ctx, st.storage)
	if err != nil {
		res.Error = fmt.Sprintf("listing the codes: %v", err)
	}
	failed := 0
	for _, key := range keys {
		raw, err := st.storage.Load(ctx, key)
		if err != nil {
			continue // gone since the listing
		}
		head, _, _ := bytes.Cut(raw, []byte("\n"))
		var meta entryMeta
		if json.Unmarshal(head, &meta) != nil || appOf(meta.Request) != appID {
			continue
		}
		if err := st.storage.Delete(ctx, key); err != nil {
			failed++
			res.Error = fmt.Sprintf("removing %d codes: %v", failed, err)
			continue
		}
		res.Codes++
	}
	res.Memory = st.purgeMemory(func(k string) bool {
		canonical, _, _ := strings.Cut(k, "#")
		return appOf(canonical) == appID
	})
	caddy.Log().Named("admin.api.wxqrcode").Info("purged app",
		zap.String("appid", appID),
		zap.String("storage", res.Storage),
		zap.Int("codes", res.Codes),
		zap.Int("memory_entries", res.Memory),
		zap.String("error", res.Error))
	return res
}

// appOf is the appid of a canonical request.
func appOf(canonical string) string {
	q, _ := url.ParseQuery(canonical)
	return q.Get("appid")
}

// purgeMemory removes the entries whose key matches from the memory
// caches of st, and counts them.
func (st *store) purgeMemory(match func(key string) bool) int {
	n := 0
	for _, mem := range st.mems {
		n += mem.purge(match)
	}
	return n
}

// print writes what the purge removed, and the failures to errOut.
func (res purgeResponse) print(out, errOut io.Writer, req purgeRequest) error {
	failed := 0
	for _, pr := range res.Results {
		switch {
		case pr.Error != "" && pr.ErrCode != 0:
			fmt.Fprintf(errOut, "%s: %s (errcode %d)\n", pr.URL, pr.Error, pr.ErrCode)
		case pr.Error != "":
			fmt.Fprintf(errOut, "%s: %s\n", pr.URL, pr.Error)
		case !pr.Stored && pr.Memory == 0:
			fmt.Fprintf(out, "%s: not cached\n", pr.URL)
		default:
			fmt.Fprintf(out, "%s: removed\n", pr.URL)
		}
		if pr.Error != "" {
			failed++
		}
	}
	if len(res.Storages) == 0 && req.AppID != "" {
		fmt.Fprintln(out, "the running Caddy has no wxqrcode handler")
	}
	storagesFailed := 0
	for _, st := range res.Storages {
		of := ""
		if req.AppID != "" {
			of = " of " + req.AppID
		}
		fmt.Fprintf(out, "storage: %s\n  codes%s removed: %d\n  memory entries removed: %d\n", st.Storage, of, st.Codes, st.Memory)
		if st.Error != "" {
			storagesFailed++
			fmt.Fprintf(errOut, "storage %s: %s\n", st.Storage, st.Error)
		}
	}
	switch {
	case failed > 0:
		return fmt.Errorf("%d of %s not purged", failed, count(len(res.Results), "URL"))
	case storagesFailed > 0:
		return fmt.Errorf("%d of %d storages not purged whole", storagesFailed, len(res.Storages))
	}
	return nil
}
