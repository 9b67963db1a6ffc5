// Package wxqrcode is a Caddy HTTP handler that answers with WeChat
// mini-program codes. It holds an app's credentials, reuses the access
// token, asks WeChat for each distinct code once, keeps the image in a
// Caddy storage and serves it like a static file. WeChat's refusals reach
// the client as WeChat's own JSON with a fitting HTTP status.
package wxqrcode

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler answers requests with a WeChat mini-program code image.
//
// Each request's parameters come from templates (Caddy placeholders), so a
// route can take them from the query, the path or fixed values. The first
// request for a code asks WeChat; every later one, on any instance sharing
// the storage and after restarts, is served from the cache.
type Handler struct {
	// AppID is the mini-program's appid. Global placeholders such as
	// {env.WX_APPID} are resolved once at load. Required.
	AppID string `json:"appid,omitempty"`

	// Secret is the app secret. Global placeholders such as {env.WX_SECRET}
	// are resolved once at load, so the config can keep the placeholder
	// and not the secret. It is never logged. Required.
	Secret string `json:"secret,omitempty"`

	// API picks the code: qrcode (wxacode.createQRCode, the default),
	// wxacode (wxacode.get) or unlimited (wxacode.getUnlimited), or an
	// official account's parametric code, oa_temporary or oa_permanent
	// (qrcode.create, drawn here as a QR code of the url WeChat gives).
	// qrcode and wxacode share WeChat's lifetime budget of 100,000 codes per
	// app; oa_permanent spends the account's own 100,000.
	API string `json:"api,omitempty"`

	// Path is the template of the page path with its query, for qrcode and
	// wxacode. Default: {http.request.uri.query.path}.
	Path string `json:"path,omitempty"`

	// Page is the template of the page for unlimited, with no leading
	// slash and no query; empty means the home page.
	// Default: {http.request.uri.query.page}.
	Page string `json:"page,omitempty"`

	// Scene is the template of the scene for unlimited, 1 to 32 characters,
	// or for oa_temporary and oa_permanent, 1 to 64 characters.
	// Default: {http.request.uri.query.scene}.
	Scene string `json:"scene,omitempty"`

	// Expire (oa_temporary) is the life of each code, 60s to 30d in whole
	// seconds; default 30d. A code is served until shortly before it
	// expires (10% of its life, at most an hour), then made anew.
	Expire caddy.Duration `json:"expire,omitempty"`

	// Width is the template of the served image's width in pixels, 280 to
	// 1280; empty means 430. WeChat draws each code once, at 1280 pixels,
	// and every width is rendered from that master, so a width spends no
	// call and is not part of the cache key or the signature.
	// Default: {http.request.uri.query.width}.
	Width string `json:"width,omitempty"`

	// AutoColor (wxacode, unlimited) is "true" or "false", or a template
	// giving one. Empty means false.
	AutoColor string `json:"auto_color,omitempty"`

	// LineColor (wxacode, unlimited) is "r,g,b" or "#rrggbb", or a template
	// giving one. Empty means black.
	LineColor string `json:"line_color,omitempty"`

	// IsHyaline (wxacode, unlimited) asks for a transparent PNG: "true" or
	// "false", or a template. Empty means false.
	IsHyaline string `json:"is_hyaline,omitempty"`

	// EnvVersion (wxacode, unlimited) is release, trial or develop, or a
	// template giving one. Empty means release.
	EnvVersion string `json:"env_version,omitempty"`

	// CheckPath (unlimited) makes WeChat refuse unpublished pages: "true"
	// or "false", or a template. Empty means true.
	CheckPath string `json:"check_path,omitempty"`

	// CacheDir keeps the codes in a file_system storage at this directory.
	// Default: Caddy's configured storage.
	CacheDir string `json:"cache_dir,omitempty"`

	// StorageRaw keeps the codes in any caddy.storage module, for example
	// one shared by every instance of a cluster. Default: Caddy's
	// configured storage.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`

	// Token picks the token endpoint: stable (/cgi-bin/stable_token, the
	// default, safe to share between instances) or classic
	// (/cgi-bin/token, which kills the previous token: one instance only).
	Token string `json:"token,omitempty"`

	// APIBase is WeChat's API host; global placeholders are resolved once
	// at load. Default: https://api.weixin.qq.com.
	APIBase string `json:"api_base,omitempty"`

	// Timeout bounds one call to WeChat, retries included. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Allow lists globs over the path with its query (qrcode, wxacode) or
	// the page (unlimited) that may be generated; * matches any run of
	// characters, / and ? included. A lone * allows any path. When
	// requests can choose among unboundedly many codes (a template reads
	// the request and allow has a *), the config is refused unless it has
	// sign_key or a cap: a total cap for qrcode and wxacode, whose codes
	// spend a lifetime budget, any cap for unlimited.
	Allow []string `json:"allow,omitempty"`

	// SignKey lists keys for signed URLs. When set, every request must
	// carry sig, the hex HMAC-SHA256 of its canonical request under one of
	// the keys (see the README); the first key is the one to sign with,
	// the others are still accepted, for rotation. Global placeholders
	// such as {env.WXQRCODE_SIGN_KEY} are resolved once at load. At least
	// 16 characters each.
	SignKey []string `json:"sign_key,omitempty"`

	// Caps limit the new codes this handler has WeChat generate, per
	// window or in total, counted per app in the storage (each instance
	// leases blocks of the count), or per visitor, counted in memory.
	Caps []Cap `json:"caps,omitempty"`

	// MemoryCache bounds the memory cache in front of the storage, in
	// bytes; 0 means 64 MiB, negative turns it off. It holds the masters
	// and the widths rendered from them; without it, a width other than
	// 1280 is rendered on every request. Handlers with the same
	// storage and bound share one, across config reloads too.
	MemoryCache int64 `json:"memory_cache,omitempty"`

	appID    string
	secret   string
	apiBase  string
	signKeys []string
	quota    *quota
	visitors []*visitorCap
	// visitorKeys are the per-visitor caps' keys in visitorPool.
	visitorKeys []string
	// inFlight bounds the calls to WeChat this handler makes at once.
	inFlight *semaphore.Weighted
	mem      *memoryCache
	memKey   string
	storeID  string
	// pending counts the codes being stored after their answer.
	pending *sync.WaitGroup
	faults  *faultLog
	// queryNames are the query parameters the templates read, which a
	// request may give once only; queryKeys their placeholders.
	queryNames []string
	queryKeys  []string
	tokKey     string
	client     *wechat.Client
	cache      *codeCache
	logger     *zap.Logger
	timeout    time.Duration
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wxqrcode",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Defaults.
const (
	defaultTimeout = 10 * time.Second
	// maxTimeout bounds timeout: a request waits that long at most.
	maxTimeout = time.Hour
	// maxInFlight bounds the new codes one handler fetches at once; more
	// wait for up to timeout, then get a 503. It is well above the 40 in
	// flight per instance of bench/cluster.sh.
	maxInFlight  = 64
	tokenStable  = "stable"
	tokenClassic = "classic"
)

// tokenPool keeps token sources across config reloads, so a reload asks
// WeChat for no new token.
var tokenPool = caddy.NewUsagePool()

// pooledTokens lets a token source live in the UsagePool.
type pooledTokens struct{ *wechat.ReuseTokenSource }

func (pooledTokens) Destruct() error { return nil }

// resolveConfig resolves the credentials and keys with global placeholders,
// and sets the defaults: what Provision does before it opens anything.
func (h *Handler) resolveConfig() {
	repl := caddy.NewReplacer()
	h.appID = repl.ReplaceAll(h.AppID, "")
	h.secret = repl.ReplaceAll(h.Secret, "")
	if h.API == "" {
		h.API = apiQRCode
	}
	if h.Token == "" {
		h.Token = tokenStable
	}
	h.apiBase = strings.TrimRight(cmp.Or(repl.ReplaceAll(h.APIBase, ""), wechat.DefaultBaseURL), "/")
	h.timeout = time.Duration(h.Timeout)
	if h.timeout == 0 {
		h.timeout = defaultTimeout
	}
	h.setTemplateDefaults()
	h.signKeys = nil
	for _, k := range h.SignKey {
		h.signKeys = append(h.signKeys, repl.ReplaceAll(k, ""))
	}
}

// Provision resolves the credentials, sets defaults and opens the storage.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.faults = newFaultLog(h.logger)
	h.resolveConfig()
	h.warnLiteralSecrets()

	storage, err := h.openStorage(ctx)
	if err != nil {
		return err
	}
	h.cache = &codeCache{storage: storage}
	h.storeID = h.storageID(ctx)
	h.pending = new(sync.WaitGroup)
	if err := h.openMemoryCache(ctx); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	group := groupLimited
	switch h.API {
	case apiUnlimited:
		group = groupUnlimited
	case apiOATemporary:
		group = groupOATemporary
	case apiOAPermanent:
		group = groupOAPermanent
	}
	bookKey := h.storeID + "|" + h.appID + "|" + group
	h.quota, err = openQuota(func() *book { return newBook(storage, h.appID, group, h.logger) }, bookKey, h.Caps)
	if err != nil {
		return err
	}
	h.visitors, h.visitorKeys, err = openVisitorCaps(bookKey, h.Caps)
	if err != nil {
		return err
	}
	h.inFlight = semaphore.NewWeighted(maxInFlight)

	// No redirects: one would carry the token in the Referer, and a 307
	// the secret in the body, to another host.
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var src wechat.TokenSource
	if h.Token == tokenClassic {
		src = &wechat.ClassicTokenSource{BaseURL: h.apiBase, AppID: h.appID, Secret: h.secret, HTTPClient: hc, Observer: metricsObserver{}}
	} else {
		src = &wechat.StableTokenSource{BaseURL: h.apiBase, AppID: h.appID, Secret: h.secret, HTTPClient: hc, Observer: metricsObserver{}}
	}
	shared := &sharedTokens{storage: storage, key: "wxqrcode/tokens/" + h.appID + "/" + h.Token + ".json", src: src, faults: h.faults}
	secretSum := sha256.Sum256([]byte(h.secret))
	h.tokKey = strings.Join([]string{h.apiBase, h.appID, h.Token, hex.EncodeToString(secretSum[:]), h.storeID}, "|")
	pooled, _, err := tokenPool.LoadOrNew(h.tokKey, func() (caddy.Destructor, error) {
		return pooledTokens{wechat.NewReuseTokenSource(shared)}, nil
	})
	if err != nil {
		return err
	}
	h.client = &wechat.Client{BaseURL: h.apiBase, HTTPClient: hc, Tokens: pooled.(pooledTokens).ReuseTokenSource, Observer: metricsObserver{}}
	return nil
}

// warnLiteralSecrets warns of a secret or sign key written into the
// config: Caddy's admin API (/config/) and its autosave file show the
// config, placeholders as they are, so only a placeholder keeps it out.
func (h *Handler) warnLiteralSecrets() {
	const advice = "Caddy's admin API (/config/) and its autosave file show it; use a placeholder such as {env.NAME} or {file./path}"
	if h.Secret != "" && !hasPlaceholder(h.Secret) {
		h.logger.Warn("the secret is written in the config: "+advice, zap.String("appid", h.appID))
	}
	for i, k := range h.SignKey {
		if !hasPlaceholder(k) {
			h.logger.Warn("a sign_key is written in the config: "+advice, zap.Int("sign_key", i+1))
		}
	}
}

// setTemplateDefaults fills the templates left empty, and notes the query
// parameters the templates read.
func (h *Handler) setTemplateDefaults() {
	setDefault(&h.Path, "{http.request.uri.query.path}")
	setDefault(&h.Page, "{http.request.uri.query.page}")
	setDefault(&h.Scene, "{http.request.uri.query.scene}")
	setDefault(&h.Width, "{http.request.uri.query.width}")
	h.queryNames = queryNames(h.Path, h.Page, h.Scene, h.Width, h.AutoColor, h.LineColor, h.IsHyaline, h.EnvVersion, h.CheckPath)
	if len(h.SignKey) > 0 {
		h.queryNames = append(h.queryNames, sigParam)
	}
	h.queryKeys = nil
	for _, name := range h.queryNames {
		h.queryKeys = append(h.queryKeys, queryPrefix+name)
	}
}

func setDefault(field *string, value string) {
	if *field == "" {
		*field = value
	}
}

// memoryPool keeps memory caches across config reloads.
var memoryPool = caddy.NewUsagePool()

// openMemoryCache takes the memory cache for this handler's storage and
// bound from the pool, or makes it.
func (h *Handler) openMemoryCache(ctx caddy.Context) error {
	if h.MemoryCache < 0 {
		return nil
	}
	size := cmp.Or(h.MemoryCache, DefaultMemoryCache)
	h.memKey = fmt.Sprintf("%s|%d", h.storeID, size)
	mem, _, err := memoryPool.LoadOrNew(h.memKey, func() (caddy.Destructor, error) {
		return newMemoryCache(uint64(size))
	})
	if err != nil {
		return err
	}
	h.mem = mem.(*memoryCache)
	return nil
}

// storageID names the handler's storage, so that what the pools share is
// shared only between handlers of one storage.
func (h *Handler) storageID(ctx caddy.Context) string {
	switch {
	case h.StorageRaw != nil:
		return "module:" + string(h.StorageRaw)
	case h.CacheDir != "":
		return "dir:" + h.CacheDir
	}
	// The storage's own name, not its fields, which may hold credentials.
	return "default:" + storageName(ctx.Storage())
}

func (h *Handler) openStorage(ctx caddy.Context) (certmagic.Storage, error) {
	switch {
	case h.StorageRaw != nil:
		mod, err := ctx.LoadModule(h, "StorageRaw")
		if err != nil {
			return nil, fmt.Errorf("loading storage module: %v", err)
		}
		storage, err := mod.(caddy.StorageConverter).CertMagicStorage()
		if err != nil {
			return nil, fmt.Errorf("opening storage: %v", err)
		}
		return storage, nil
	case h.CacheDir != "":
		return &certmagic.FileStorage{Path: caddy.NewReplacer().ReplaceAll(h.CacheDir, "")}, nil
	}
	return ctx.Storage(), nil
}

// Validate rejects a config that cannot work, saying what to change.
func (h *Handler) Validate() error {
	if h.appID == "" {
		return fmt.Errorf("appid is empty after resolving %q: set it, or the environment variable it names", h.AppID)
	}
	if h.secret == "" {
		return fmt.Errorf("secret is empty after resolving placeholders: set it, or the environment variable it names")
	}
	if !validAppID(h.appID) {
		return fmt.Errorf("appid may hold only letters, digits, _ and - (WeChat appids look like wx0123456789abcdef)")
	}
	if err := checkValue("api_base", h.apiBase); err != nil {
		return err
	}
	for _, k := range h.signKeys {
		if len(k) < minSignKeyLen {
			return fmt.Errorf("sign_key must be at least %d characters after resolving placeholders (for example: openssl rand -hex 32)", minSignKeyLen)
		}
	}
	return h.checkConfig()
}

// checkConfig checks what needs no provisioning. The Caddyfile adapter
// runs it too, to report errors with their file and line.
func (h *Handler) checkConfig() error {
	if h.AppID == "" || h.Secret == "" {
		return fmt.Errorf("appid and secret are required")
	}
	api := cmp.Or(h.API, apiQRCode)
	values := []struct{ name, value string }{
		{"api", h.API}, {"token", h.Token}, {"api_base", h.APIBase},
		{"width", h.Width}, {"line_color", h.LineColor}, {"env_version", h.EnvVersion},
		{"auto_color", h.AutoColor}, {"is_hyaline", h.IsHyaline}, {"check_path", h.CheckPath},
	}
	for _, v := range values {
		if err := checkValue(v.name, v.value); err != nil {
			return err
		}
	}
	if h.Timeout < 0 || time.Duration(h.Timeout) > maxTimeout {
		return fmt.Errorf("timeout must be at most 1h and not negative (0 means the default, 10s)")
	}
	if h.CacheDir != "" && h.StorageRaw != nil {
		return fmt.Errorf("use either cache_dir or storage, not both")
	}
	for _, g := range h.Allow {
		if g == "" {
			return fmt.Errorf("allow: empty glob; use * to allow any path")
		}
	}
	for _, k := range h.SignKey {
		if k == "" {
			return fmt.Errorf("sign_key: empty key")
		}
	}
	if err := checkCaps(h.Caps); err != nil {
		return err
	}
	options := []struct{ name, value, apis string }{
		{"path", h.Path, apiQRCode + " " + apiWxaCode},
		{"page", h.Page, apiUnlimited},
		{"scene", h.Scene, apiUnlimited + " " + apiOATemporary + " " + apiOAPermanent},
		{"auto_color", h.AutoColor, apiWxaCode + " " + apiUnlimited},
		{"line_color", h.LineColor, apiWxaCode + " " + apiUnlimited},
		{"is_hyaline", h.IsHyaline, apiWxaCode + " " + apiUnlimited},
		{"env_version", h.EnvVersion, apiWxaCode + " " + apiUnlimited},
		{"check_path", h.CheckPath, apiUnlimited},
	}
	for _, o := range options {
		if o.value != "" && !isDefaultTemplate(o.name, o.value) && !strings.Contains(o.apis, api) {
			return fmt.Errorf("%s applies to api %s only, not %s", o.name, andList(o.apis), api)
		}
	}
	if err := h.checkOA(api); err != nil {
		return err
	}
	if msg := h.guardMessage(api); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// isDefaultTemplate tells the defaults Provision filled in from options the
// user set.
func isDefaultTemplate(name, value string) bool {
	return value == "{http.request.uri.query."+name+"}"
}

// checkValue rejects a bad value of a single option. Templates are checked
// per request instead.
func checkValue(name, value string) error {
	if value == "" || (strings.Contains(value, "{") && name != "api" && name != "token") {
		return nil
	}
	var err error
	switch name {
	case "api":
		if value != apiQRCode && value != apiWxaCode && value != apiUnlimited && !isOA(value) {
			return fmt.Errorf("api must be qrcode, wxacode, unlimited, oa_temporary or oa_permanent, not %q", value)
		}
	case "token":
		if value != tokenStable && value != tokenClassic {
			return fmt.Errorf("token must be stable or classic, not %q", value)
		}
	case "api_base":
		if u, perr := url.Parse(value); perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return fmt.Errorf("api_base must be an http or https URL such as %s, not %q", wechat.DefaultBaseURL, value)
		} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			return fmt.Errorf("api_base needs https: the secret and the access token travel to it (plain http only to a loopback host such as 127.0.0.1), not %q", value)
		}
	case "width":
		_, err = parseWidth(value)
	case "line_color":
		_, err = parseColor(value)
	case "auto_color", "is_hyaline", "check_path":
		_, err = parseBool(name, value, false)
	case "env_version":
		switch value {
		case wechat.EnvRelease, wechat.EnvTrial, wechat.EnvDevelop:
		default:
			return fmt.Errorf("env_version must be release, trial, develop or a placeholder, not %q", value)
		}
	}
	if err != nil {
		return errors.New(err.(*wechat.Error).Message)
	}
	return nil
}

// isLoopback reports whether host, a URL's hostname, is this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Cleanup finishes storing fetched codes, then releases the pooled token
// source, memory cache and counts: the last handler using a cap's lease
// gives back what it did not spend.
func (h *Handler) Cleanup() error {
	if h.pending != nil {
		h.pending.Wait()
	}
	if h.quota != nil {
		h.quota.close()
	}
	for _, k := range h.visitorKeys {
		_, _ = visitorPool.Delete(k)
	}
	var errs []error
	if h.tokKey != "" {
		_, err := tokenPool.Delete(h.tokKey)
		errs = append(errs, err)
	}
	if h.memKey != "" {
		_, err := memoryPool.Delete(h.memKey)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// codeRequestOf resolves the templates for r, a request prepared by Caddy,
// and checks the result against WeChat's rules and allow. It returns the
// query too, for the signature.
func (h *Handler) codeRequestOf(r *http.Request) (*codeRequest, url.Values, error) {
	cr, query, err := h.resolveOf(r)
	if err != nil {
		return cr, query, err
	}
	return cr, query, h.checkAllowed(cr)
}

// resolveOf resolves the templates for r and checks the result against
// WeChat's rules.
func (h *Handler) resolveOf(r *http.Request) (*codeRequest, url.Values, error) {
	query, err := checkQuery(r.URL.RawQuery, h.queryNames)
	if err != nil {
		return nil, nil, err
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// Caddy's replacer would parse the query again for each placeholder.
	for i, name := range h.queryNames {
		repl.Set(h.queryKeys[i], query.Get(name))
	}
	cr, err := h.resolveRequest(repl)
	return cr, query, err
}

func (h *Handler) checkAllowed(cr *codeRequest) error {
	if !h.allowed(cr.subject) {
		return localProblem(http.StatusForbidden, codeNotAllowed, "wxqrcode: this path may not be generated here (see allow)")
	}
	return nil
}

// signedRequestOf is codeRequestOf for a handler with sign_key: the
// signature is checked first, so that only a signed request learns
// anything about its inputs or allow.
func (h *Handler) signedRequestOf(r *http.Request) (*codeRequest, error) {
	// A malformed query still yields the parameters it could parse.
	raw, _ := url.ParseQuery(r.URL.RawQuery)
	if raw.Get(sigParam) == "" {
		return nil, localProblem(http.StatusForbidden, codeSigMissing, sigMissingMessage)
	}
	cr, query, err := h.resolveOf(r)
	if err != nil {
		h.logger.Debug("a signed request that does not resolve is refused as wrongly signed", zap.Error(err))
		return nil, localProblem(http.StatusForbidden, codeSigInvalid, sigInvalidMessage)
	}
	if err := checkSignature(h.signKeys, cr.canonical, query.Get(sigParam)); err != nil {
		return cr, err
	}
	return cr, h.checkAllowed(cr)
}

// ServeHTTP answers with the code image, or with a JSON error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// Every answer is an image or JSON of its stated type, never a page.
	w.Header()["X-Content-Type-Options"] = []string{"nosniff"}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, nil, localProblem(http.StatusMethodNotAllowed, codeMethod, "wxqrcode: only GET and HEAD are allowed"))
		return nil
	}
	var cr *codeRequest
	var err error
	if len(h.signKeys) > 0 {
		cr, err = h.signedRequestOf(r)
	} else {
		cr, _, err = h.codeRequestOf(r)
	}
	if err != nil {
		h.fail(w, cr, err)
		return nil
	}
	e, outcome, err := h.sized(r.Context(), cr)
	if err != nil && r.Context().Err() != nil {
		h.logger.Debug("client went away", zap.String("key", cr.key))
		return nil
	}
	if err != nil {
		h.fail(w, cr, err)
		return nil
	}
	w.Header()["Cache-Status"] = []string{cacheStatus[outcome]}
	countRequest(outcome, serveEntry(w, r, e))
	return nil
}

// cacheStatus says, as RFC 9211's Cache-Status header, where an answer
// came from; caddy wxqrcode prefetch reads it.
var cacheStatus = map[string]string{
	outcomeMemoryHit:  "wxqrcode; hit; detail=memory",
	outcomeStorageHit: "wxqrcode; hit; detail=storage",
	outcomeRendered:   "wxqrcode; hit; detail=rendered",
	outcomeMiss:       "wxqrcode; fwd=uri-miss; stored",
}

func (h *Handler) allowed(subject string) bool {
	if len(h.Allow) == 0 {
		return true
	}
	for _, g := range h.Allow {
		if globMatch(g, subject) {
			return true
		}
	}
	return false
}

// flight joins concurrent fetches of one code. It is shared by every
// handler, so routes for the same app and the old and new handlers of a
// config reload also make one call per code.
var flight singleflight.Group

// The outcomes of a lookup, for metrics.
const (
	outcomeMemoryHit  = "memory_hit"
	outcomeStorageHit = "storage_hit"
	// outcomeRendered is a width drawn now from a cached master.
	outcomeRendered = "rendered"
	outcomeMiss     = "miss"
)

// renders joins concurrent renders of one width of one code.
var renders singleflight.Group

// sized returns the code at the requested width: a width rendered
// before from memory, else the master, as it is when it has that width,
// or rendered from it. Rendered widths stay in the memory cache only: the
// master renders them again at no cost but CPU.
func (h *Handler) sized(ctx context.Context, cr *codeRequest) (*entry, string, error) {
	// A URL-encoded canonical has no #, so no master has this key.
	key := cr.canonical + "#" + strconv.Itoa(cr.width)
	if h.mem != nil {
		if e, ok := h.mem.GetIfPresent(key); ok {
			return e, outcomeMemoryHit, nil
		}
	}
	master, outcome, err := h.lookup(ctx, cr)
	if err != nil || master.width == cr.width {
		return master, outcome, err
	}
	ch := renders.DoChan(h.storeID+"|"+key, func() (any, error) {
		if h.mem != nil {
			// Rendered by a flight that ended since this request looked.
			if e, ok := h.mem.GetIfPresent(key); ok {
				return e, nil
			}
		}
		start := time.Now()
		e, err := render(master, cr.width)
		if err != nil {
			return nil, err
		}
		h.logger.Debug("rendered width",
			zap.String("api", cr.api),
			zap.String("key", cacheKey(cr.canonical)),
			zap.Int("width", cr.width),
			zap.Int("bytes", len(e.data)),
			zap.Duration("duration", time.Since(start)))
		if h.mem != nil {
			h.mem.Set(key, e)
		}
		return e, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, "", res.Err
		}
		if outcome != outcomeMiss {
			outcome = outcomeRendered
		}
		return res.Val.(*entry), outcome, nil
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// lookup returns the code from memory, from the storage, or fetched:
// once per key however many requests wait. The fetch runs apart from the
// request, so a client that gives up does not waste a call already paid
// for.
func (h *Handler) lookup(ctx context.Context, cr *codeRequest) (*entry, string, error) {
	if h.mem != nil {
		if e, ok := h.mem.GetIfPresent(cr.canonical); ok {
			return e, outcomeMemoryHit, nil
		}
	}
	cr.key = cacheKey(cr.canonical)
	e, err := h.cache.load(ctx, cr.key)
	if err != nil && !errors.Is(err, errCorrupt) && cr.api != apiUnlimited && cr.api != apiOATemporary {
		// The code may be stored, and paid for out of the lifetime budget.
		h.faults.warn("reading the cache; not asking WeChat for a code that may be stored", zap.String("key", cr.key), zap.Error(err))
		return nil, "", errCacheUnreadable
	}
	if err != nil {
		h.faults.warn("reading the cache; fetching the code", zap.String("key", cr.key), zap.Error(err))
	}
	if e != nil {
		h.logger.Debug("cache hit", zap.String("api", cr.api), zap.String("key", cr.key))
		h.remember(cr, e)
		return e, outcomeStorageHit, nil
	}
	giveBack, err := h.countVisitor(ctx)
	if err != nil {
		return nil, "", err
	}
	ch := flight.DoChan(h.storeID+"|"+cr.key, func() (any, error) {
		return h.fetch(context.WithoutCancel(ctx), cr)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			giveBack()
			return nil, "", res.Err
		}
		e := res.Val.(*entry)
		h.remember(cr, e)
		return e, outcomeMiss, nil
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

func (h *Handler) remember(cr *codeRequest, e *entry) {
	if h.mem != nil {
		h.mem.Set(cr.canonical, e)
	}
}

// fetch asks WeChat for the code and caches it. The storage's lock for the
// key makes instances sharing the storage call once between them: whoever
// waited for the lock finds the code cached. The answer does not wait for
// the storage: the image is stored and the lock released after it, still
// before another instance can take the lock; the code is counted in
// memory and written with the caps' next flush. A storage that fails to
// lock or write costs the cache, not the answer.
func (h *Handler) fetch(ctx context.Context, cr *codeRequest) (*entry, error) {
	// Cleanup waits for this fetch, its call and its writes.
	h.pending.Add(1)
	stored := false
	defer func() {
		if !stored {
			h.pending.Done()
		}
	}()
	lock := cachePrefix + "lock/" + cr.key
	// Wait longer than a holder may hold the lock, so as not to fetch the
	// code again beside it.
	lctx, cancel := context.WithTimeout(ctx, h.lockHold()+lockMargin)
	err := h.cache.storage.Lock(lctx, lock)
	cancel()
	locked := err == nil
	unlock := func() {
		if !locked {
			return
		}
		if err := h.cache.storage.Unlock(context.WithoutCancel(ctx), lock); err != nil {
			h.faults.warn("unlocking a cache entry", zap.String("key", cr.key), zap.Error(err))
		}
	}
	if !locked {
		h.faults.warn("locking a cache entry; fetching without the lock", zap.String("key", cr.key), zap.Error(err))
	} else if e, err := h.cache.load(ctx, cr.key); err == nil && e != nil {
		unlock()
		return e, nil // cached while this one waited for the lock
	} else if errors.Is(err, errCorrupt) {
		// Not a whole entry: remove it, then fetch it again.
		if err := h.cache.storage.Delete(ctx, storageKey(cr.key)); err != nil {
			h.faults.warn("removing a corrupt cache entry", zap.String("key", cr.key), zap.Error(err))
		}
	}

	// A slot among the calls in flight, and a code from every cap, within
	// one timeout.
	wctx, cancel := context.WithTimeout(ctx, h.timeout)
	if err := h.inFlight.Acquire(wctx, 1); err != nil {
		cancel()
		unlock()
		return nil, busyProblem()
	}
	defer h.inFlight.Release(1)
	res, err := h.quota.reserve(wctx)
	cancel()
	if err != nil {
		unlock()
		return nil, err
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	img, err := cr.call(cctx, h.client)
	cancel()
	var e *entry
	if err == nil {
		e, err = prepare(img)
	}
	if err != nil {
		// Only WeChat's own refusal says no code was made; after a timeout
		// or a broken reply it may have been, and stays counted.
		var werr *wechat.Error
		if errors.As(err, &werr) {
			h.quota.release(res)
		} else if len(res) > 0 {
			h.quota.spent(-1)
		}
		unlock()
		return nil, err
	}
	h.quota.spent(img.NumUsed)
	metrics.codesGenerated.WithLabelValues(cr.api).Inc()
	if img.NumUsed >= 0 {
		metrics.numUsed.WithLabelValues(h.appID).Set(float64(img.NumUsed))
	}
	h.logger.Info("fetched code",
		zap.String("api", cr.api),
		zap.String("key", cr.key),
		zap.Int("bytes", len(img.Data)),
		zap.String("content_type", e.contentType),
		zap.Int("num_used", img.NumUsed),
		zap.Duration("duration", time.Since(start)))

	stored = true
	go func() {
		defer h.pending.Done()
		defer unlock()
		sctx, cancel := context.WithTimeout(ctx, h.timeout)
		defer cancel()
		if err := h.cache.store(sctx, cr.key, cr.canonical, e); err != nil {
			h.faults.error("storing a code; it is served, not cached", zap.String("key", cr.key), zap.Error(err))
		}
	}()
	return e, nil
}

// lockMargin is what a waiter for a code's lock allows beyond lockHold.
const lockMargin = 5 * time.Second

// lockHold is the longest a fetch holds a code's storage lock: a timeout
// for a slot and the caps, one for the call and one for the store.
func (h *Handler) lockHold() time.Duration { return 3 * h.timeout }

// fail logs err, an error or a *problem, and answers with its problem.
// Errors of this module and of package wechat carry no secret or token.
func (h *Handler) fail(w http.ResponseWriter, cr *codeRequest, err error) {
	p, ok := err.(*problem)
	if !ok {
		p = problemFor(err)
	}
	fields := []zap.Field{zap.Int("status", p.status), zap.Int("errcode", p.code), zap.String("errmsg", p.message)}
	if !ok {
		fields = append(fields, zap.Error(err))
	}
	if cr != nil {
		fields = append(fields, zap.String("api", cr.api))
		if cr.key != "" {
			fields = append(fields, zap.String("key", cr.key))
		}
	}
	outcome := "rejected"
	if p.status >= http.StatusInternalServerError {
		outcome = "error"
	}
	countRequest(outcome, p.status)
	if p.status >= http.StatusInternalServerError {
		h.logger.Error("code request failed", fields...)
	} else {
		h.logger.Debug("code request refused", fields...)
	}
	p.write(w)
}

// cacheControl is what a code gets unless a header directive set one: a
// code never changes.
const cacheControl = "public, max-age=31536000, immutable"

// serveEntry writes the image like a static file and returns the status.
// A plain GET or HEAD gets the prepared headers and the bytes; conditional
// and range requests go through http.ServeContent.
func serveEntry(w http.ResponseWriter, r *http.Request, e *entry) int {
	hdr := w.Header()
	hdr["Content-Type"] = []string{e.contentType}
	hdr["Etag"] = []string{e.etag}
	setFreshness(hdr, e)
	if r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" ||
		r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "" {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		http.ServeContent(rec, r, "", e.stored, bytes.NewReader(e.data))
		return rec.status
	}
	hdr["Last-Modified"] = []string{e.lastModified}
	hdr["Content-Length"] = []string{e.length}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.data)
	}
	return http.StatusOK
}

// statusRecorder notes the status http.ServeContent chose.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
