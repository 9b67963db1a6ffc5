package wxqrcode

import "fmt"

// The admin API's wire types, shared by its handlers (admin.go) and the
// commands that call it (cmd_*.go):
//
//	POST /wxqrcode/sign   signRequest → signResponse
//	GET  /wxqrcode/stats  → statsResponse
//	POST /wxqrcode/purge  purgeRequest → purgeResponse

// signRequest is the body of POST /wxqrcode/sign.
type signRequest struct {
	URLs []string `json:"urls"`
	// Name picks the wxqrcode handler by its name option; empty, each
	// URL's is the first whose route's matchers match it.
	Name string `json:"name,omitempty"`
}

type signResponse struct {
	Results []signResult `json:"results"`
}

// signResult is what the running config makes of one URL.
type signResult struct {
	// URL is the URL to ask for: with its sig when the handler that
	// serves it has sign_key, else as it was given.
	URL string `json:"url"`
	// Signed tells that the handler has sign_key and URL carries its
	// signature.
	Signed bool `json:"signed,omitempty"`
	// Error says why no code would be served for the URL; ErrCode is the
	// errcode the handler would answer with, 0 when no wxqrcode handler
	// serves the URL.
	Error   string `json:"error,omitempty"`
	ErrCode int    `json:"errcode,omitempty"`
}

// maxSignBatch bounds the URLs of one sign request; caddy wxqrcode
// prefetch sends signBatch at a time.
const maxSignBatch = 10000

type statsResponse struct {
	Storages []storageStats `json:"storages"`
}

// purgeRequest is the body of POST /wxqrcode/purge: URLs, or an app.
type purgeRequest struct {
	URLs []string `json:"urls,omitempty"`
	// Name picks the handler of the URLs, as signRequest's.
	Name  string `json:"name,omitempty"`
	AppID string `json:"appid,omitempty"`
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

// storageStats is what one storage holds.
type storageStats struct {
	// Storage names the storage by its String or its type, never by its
	// fields (see storageName).
	Storage string `json:"storage"`
	Codes   int    `json:"codes"`
	Bytes   int64  `json:"bytes"`
	// NotWhole counts entries that do not decode; they are fetched again
	// when asked for.
	NotWhole  int          `json:"not_whole,omitempty"`
	ByApp     []appCodes   `json:"by_app,omitempty"`
	Generated []appCounted `json:"generated,omitempty"`
	// Error says why the storage could not be read, or read whole.
	Error string `json:"error,omitempty"`
}

// appCodes counts the cached codes of one api and app.
type appCodes struct {
	API   string `json:"api"`
	AppID string `json:"appid"`
	Codes int    `json:"codes"`
}

// appCounted is an app's count of the codes generated through the module,
// in one group (limited or unlimited).
type appCounted struct {
	AppID     string `json:"appid"`
	Group     string `json:"group"`
	Generated int    `json:"generated"`
	NumUsed   int    `json:"num_used,omitempty"`
}

// reason says why a URL got no code, with the errcode the route would
// answer.
func (res signResult) reason() string {
	if res.ErrCode != 0 {
		return fmt.Sprintf("%s (errcode %d)", res.Error, res.ErrCode)
	}
	return res.Error
}
