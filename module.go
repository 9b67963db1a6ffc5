// Package wxqrcode is a Caddy HTTP handler that answers with WeChat
// mini-program codes. It holds an app's credentials, reuses the access
// token, asks WeChat for each distinct code once, keeps the image in a
// Caddy storage and serves it like a static file. WeChat's refusals reach
// the client as WeChat's own JSON with a fitting HTTP status.
package wxqrcode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
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
	// Name names the handler for caddy wxqrcode sign, purge and prefetch
	// (--name), which otherwise find it by matching a URL against the
	// routes' matchers: a name reaches a handler whose route those cannot
	// tell (handlers in front that rewrite or answer). Letters, digits,
	// '.', '_' and '-'; unique in the config. Optional.
	Name string `json:"name,omitempty"`

	// AppID is the mini-program's appid. Global placeholders such as
	// {env.WX_APPID} are resolved once at load. Required.
	AppID string `json:"appid,omitempty"`

	// Secret is the app secret. Global placeholders such as {env.WX_SECRET}
	// or {file./run/secrets/wx_secret} (which drops one trailing newline)
	// are resolved once at load, so the config can keep the placeholder
	// and not the secret. It is never logged. Required with token stable
	// or classic; token url and none use no secret.
	Secret string `json:"secret,omitempty"`

	// API picks the code: qrcode (wxacode.createQRCode, the default),
	// wxacode (wxacode.get) or unlimited (wxacode.getUnlimited), or an
	// official account's parametric code, oa_temporary or oa_permanent
	// (qrcode.create, drawn here as a QR code of the url WeChat gives),
	// or link, a QR code of the app's own URL drawn here, which WeChat
	// opens in the mini-program a rule of the admin console maps it to:
	// no call, no token, no budget, and no appid or secret needed.
	// qrcode and wxacode share WeChat's lifetime budget of 100,000 codes per
	// app; oa_permanent spends the account's own 100,000. urllink
	// (generate_urllink), scheme (generatescheme) and shortlink
	// (genwxashortlink) make links rather than codes (docs/links.md).
	API string `json:"api,omitempty"`

	// Path is the template of the page path with its query, for qrcode and
	// wxacode, or of the page with no leading slash and no query, for
	// urllink, scheme and shortlink (empty: the home page, but for
	// shortlink). Default: {http.request.uri.query.path}.
	Path string `json:"path,omitempty"`

	// Page is the template of the page for unlimited, with no leading
	// slash and no query; empty means the home page.
	// Default: {http.request.uri.query.page}.
	Page string `json:"page,omitempty"`

	// Scene is the template of the scene for unlimited, 1 to 32 characters,
	// or for oa_temporary and oa_permanent, 1 to 64 characters.
	// Default: {http.request.uri.query.scene}.
	Scene string `json:"scene,omitempty"`

	// Expire (oa_temporary, urllink, scheme) is the life of each code or
	// link, 60s to 30d in whole seconds; default 30d. A code or link is
	// served until shortly before it expires (10% of its life, at most an
	// hour), then made anew.
	Expire caddy.Duration `json:"expire,omitempty"`

	// Query (urllink, scheme, shortlink) is the template of the page's
	// query, at most 1,024 characters; the link's page is Path, with no
	// leading slash and no query. Default: {http.request.uri.query.query}.
	Query string `json:"query,omitempty"`

	// Reply (urllink, scheme, shortlink) is how a link is answered:
	// redirect (302 Found to the link, the default of urllink and
	// scheme), json (WeChat's own reply shape, the default and only
	// reply of shortlink, which is pasted inside WeChat) or page (a small
	// HTML page that opens the link and offers a button to tap, for
	// browsers that open weixin:// only from a tap).
	Reply string `json:"reply,omitempty"`

	// CQ (urllink) is the template of a per-visitor value appended to the
	// cached link as cq=, at most 256 characters once URL-encoded: never
	// a new call, never part of the cache key or the signature. Default:
	// none.
	CQ string `json:"cq,omitempty"`

	// Permanent (shortlink) asks for permanent short links, of which an
	// app has 100,000 for ever; otherwise each lives 30 days.
	Permanent bool `json:"permanent,omitempty"`

	// Title (shortlink) is the template of the page title WeChat shows
	// with a short link. Default: empty.
	Title string `json:"title,omitempty"`

	// Width is the template of the served image's width in pixels, 280 to
	// 1280; empty means 430. WeChat draws each code once, at 1280 pixels,
	// and every width is rendered from that master, so a width spends no
	// call and is not part of the cache key or the signature.
	// Default: {http.request.uri.query.width}.
	Width string `json:"width,omitempty"`

	// URL (link) is the template of the URL the code holds, such as
	// https://shop.example.com/q/item/{http.request.uri.query.id}. Its
	// scheme (http or https) and host are written out in the config, so
	// that requests choose only the path and query; the URL resolved is
	// at most 1,024 bytes. Required with api link.
	URL string `json:"url,omitempty"`

	// Format (link, oa_temporary, oa_permanent: the codes drawn here) is
	// png, a 1-bit image, or svg, a vector image for print. Default png.
	Format string `json:"format,omitempty"`

	// Level (the codes drawn here) is the error correction: L, M, Q or H.
	// Default M.
	Level string `json:"level,omitempty"`

	// AutoColor (wxacode, unlimited) is "true" or "false", or a template
	// giving one. Empty means false.
	AutoColor string `json:"auto_color,omitempty"`

	// LineColor (wxacode, unlimited) is "r,g,b" or "#rrggbb", or a template
	// giving one. Empty means black.
	LineColor string `json:"line_color,omitempty"`

	// IsHyaline (wxacode, unlimited) asks for a transparent PNG: "true" or
	// "false", or a template. Empty means false.
	IsHyaline string `json:"is_hyaline,omitempty"`

	// EnvVersion (wxacode, unlimited, urllink, scheme) is release, trial
	// or develop, or a template giving one. Empty means release.
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

	// Token picks where access tokens come from: stable
	// (/cgi-bin/stable_token, the default, safe to share between
	// instances), classic (/cgi-bin/token, which kills the previous token:
	// one instance only), url (a company's central token server at
	// TokenURL; WeChat's token endpoints are never called) or none (no
	// token at all, for WeChat Cloud Hosting's open API service, where the
	// platform authenticates calls from the container).
	Token string `json:"token,omitempty"`

	// TokenURL (token url) is the central token server's http or https
	// URL. It is asked with a GET and answers in WeChat's shape,
	// {"access_token","expires_in"}; it is asked again when WeChat refuses
	// its token. Global placeholders are resolved once at load.
	TokenURL string `json:"token_url,omitempty"`

	// TokenHeader (token url) is sent with every request to the token
	// server, for its own authentication, e.g. Authorization. Global
	// placeholders in the values, such as {env.TOKEN_SERVER_KEY}, are
	// resolved once at load.
	TokenHeader http.Header `json:"token_header,omitempty"`

	// APIBase is WeChat's API host; global placeholders are resolved once
	// at load. Default: https://api.weixin.qq.com. Plain http is allowed
	// to a loopback host, or to any host with token none (no secret or
	// token travels): WeChat Cloud Hosting's http://api.weixin.qq.com.
	APIBase string `json:"api_base,omitempty"`

	// Timeout bounds one call to WeChat, retries included: at most 1h; 0
	// means the default, 10s.
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

	// Errors picks how failures are answered: json (the default) writes
	// WeChat's error JSON, or the module's, with its status; caddy returns
	// them to Caddy as handler errors with that status, so that the
	// site's handle_errors routes answer (a fallback image, a branded
	// page). There {err.status_code} is the status and {err.message}
	// "errcode <n>: <errmsg>"; a failure to get a token keeps its generic
	// message.
	Errors string `json:"errors,omitempty"`

	// MemoryCache bounds the memory cache in front of the storage, in
	// bytes; 0 means 64 MiB, negative turns it off. It holds the masters
	// and the widths rendered from them; without it, a width other than
	// 1280 is rendered on every request. Handlers with the same
	// storage and bound share one, across config reloads too.
	MemoryCache int64 `json:"memory_cache,omitempty"`

	// MaxStored bounds the codes of this app and api kept in the storage;
	// 0 means 10000. Past it, the codes stored first are removed (any can
	// be asked again: WeChat counts identical parameters once), and so
	// are expired temporary codes. The count is kept in the storage, so it
	// holds across a cluster sharing it and across restarts; routes of one
	// app and api on one storage share it, each keeping it at its own
	// bound.
	MaxStored int `json:"max_stored,omitempty"`

	// blockAt is ", at <file:line>" when the config was adapted from a
	// Caddyfile in this process, for errors found at load.
	blockAt string

	// The config resolved, with its defaults: what the handler uses.
	appID    string
	secret   string
	api      string
	token    string
	apiBase  string
	timeout  time.Duration
	path     string
	page     string
	scene    string
	width    string
	signKeys []string
	// signKeyNames name signKeys in messages: their placeholders.
	signKeyNames []string
	capSet       *caps.Set
	maxStored    int
	ledger       *ledger
	ledgerKey    string
	// stopSweep ends the sweep of expired temporary codes.
	stopSweep context.CancelFunc
	// inFlight bounds the calls to WeChat this handler makes at once.
	inFlight *semaphore.Weighted
	// waiting counts the requests waiting for new codes (maxWaiting).
	waiting *atomic.Int64
	// clock is the handler's time (clock.go).
	clock   *handlerClock
	mem     *memoryCache
	memKey  string
	storeID string
	// pending counts the codes being stored after their answer.
	pending *sync.WaitGroup
	faults  *faultLog
	// queryNames are the query parameters the templates read, which a
	// request may give once only; queryKeys their placeholders.
	queryNames []string
	queryKeys  []string
	// cacheScope is Cache-Control's public, or private when a template
	// reads the request beyond its URL (a header, a cookie, the client's
	// address), so that no shared cache serves one visitor's code to all.
	cacheScope  string
	tokenURL    string
	tokenHeader http.Header
	caddyErrors bool
	tokKey      string
	client      *wechat.Client
	cache       *codeCache
	logger      *zap.Logger

	// style is how codes drawn here are drawn; linkScheme and linkHost
	// are what a link's url must keep.
	style      drawStyle
	linkScheme string
	linkHost   string

	// linkQuery and reply are Query and Reply with their defaults, for
	// links.
	linkQuery string
	reply     string
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
	tokenURL     = "url"
	tokenNone    = "none"
	errorsJSON   = "json"
	errorsCaddy  = "caddy"
)

// Provision resolves the credentials, sets defaults and opens the storage.
func (h *Handler) Provision(ctx caddy.Context) error {
	// Before the storage module is loaded, which clears StorageRaw.
	h.blockAt = blocks.where(blockKey(h))
	h.logger = ctx.Logger()
	h.faults = newFaultLog(h.logger)
	h.resolveConfig()
	h.warnLiteralSecrets()
	if h.api == apiLink {
		return h.provisionLink(ctx)
	}

	storage, err := h.openStorage(ctx)
	if err != nil {
		return err
	}
	h.clock = newClock()
	h.cache = &codeCache{storage: storage}
	h.storeID = h.storageID(ctx)
	if err := h.openLedger(storage); err != nil {
		return err
	}
	if h.api == apiOATemporary || isWxaLink(h.api) {
		h.startSweep()
	}
	h.pending = new(sync.WaitGroup)
	if err := h.openMemoryCache(ctx); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := h.openCaps(storage); err != nil {
		return err
	}
	h.inFlight = semaphore.NewWeighted(maxInFlight)
	h.waiting = new(atomic.Int64)
	if err := h.openClient(storage); err != nil {
		return err
	}
	registerHandler(h)
	return nil
}

// Cap is a cap on new codes, as the config writes it.
type Cap = caps.Cap

// openCaps takes the handler's counts: those of its app's document in the
// storage, shared by the handlers of its api's group, and its per-visitor
// caps.
func (h *Handler) openCaps(storage certmagic.Storage) error {
	group := caps.GroupLimited
	switch h.api {
	case apiUnlimited:
		group = caps.GroupUnlimited
	case apiOATemporary:
		group = caps.GroupOATemporary
	case apiOAPermanent:
		group = caps.GroupOAPermanent
	case apiURLLink, apiScheme, apiShortLink:
		group = h.linkCapGroup()
	}
	var err error
	h.capSet, err = caps.Open(storage, h.storeID, h.appID, group, h.Caps, caps.Options{
		DocKey:  layout.quota(h.appID, group),
		DocLock: layout.quotaLock(h.appID, group),
		Now:     h.clock.Now,
		Logger:  h.logger,
		Faults:  capFaults{newFaultLog(h.logger)},
	})
	return err
}

// capFaults logs the caps' storage faults through a faultLog.
type capFaults struct{ log *faultLog }

func (f capFaults) Warn(msg string, fields ...zap.Field)  { f.log.warn(msg, fields...) }
func (f capFaults) Error(msg string, fields ...zap.Field) { f.log.error(msg, fields...) }

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

// Validate rejects a config that cannot work, saying what to change:
// first the config as the user wrote it, then what its placeholders
// resolved to. Its errors name the block's line when the Caddyfile was
// adapted in this process: with two blocks, the user must know which.
func (h *Handler) Validate() error {
	if err := h.validate(); err != nil {
		return fmt.Errorf("%w%s", err, h.blockAt)
	}
	return nil
}

func (h *Handler) validate() error {
	if err := h.checkConfig(); err != nil {
		return err
	}
	if h.api == apiLink {
		return h.validateKeys()
	}
	if h.appID == "" {
		return fmt.Errorf("appid is empty after resolving %q: set it, or the environment variable it names", h.AppID)
	}
	if h.secret == "" && h.usesSecret() {
		// The placeholder only: a literal secret is never echoed.
		return fmt.Errorf("secret is empty after resolving %s: set it, or the environment variable it names", placeholderName(h.Secret))
	}
	if h.token == tokenURL {
		if err := checkTokenURL(h.tokenURL); err != nil {
			return err
		}
	}
	if !validAppID(h.appID) {
		return fmt.Errorf("appid may hold only letters, digits, _ and - (WeChat appids look like wx0123456789abcdef)")
	}
	if err := checkAPIBase(h.apiBase, h.token == tokenNone); err != nil {
		return err
	}
	return h.validateKeys()
}

// validateKeys checks the sign keys resolved.
func (h *Handler) validateKeys() error {
	if len(h.signKeys) > 0 && h.signKeys[0] == "" {
		return fmt.Errorf("the first sign_key, %s, is empty after resolving placeholders: it is the key that signs, so set it", h.signKeyNames[0])
	}
	for i, k := range h.signKeys {
		if len(k) < minSignKeyLen {
			return fmt.Errorf("sign_key must be at least %d characters after resolving placeholders (for example: openssl rand -hex 32); %s is %d",
				minSignKeyLen, h.signKeyNames[i], len(k))
		}
	}
	return nil
}

// placeholderName quotes a credential's value in a message when it holds
// a placeholder, and never a literal's value.
func placeholderName(v string) string {
	if hasPlaceholder(v) {
		return strconv.Quote(v)
	}
	return "the value written in the config"
}

// keyName names a sign_key in a message: by its placeholder, never by a
// literal key's value.
func keyName(k string) string {
	if hasPlaceholder(k) {
		return k
	}
	return "the key written in the config"
}

// Cleanup finishes storing fetched codes, then releases the pooled token
// source, memory cache and counts: the last handler using a cap's lease
// gives back what it did not spend.
func (h *Handler) Cleanup() error {
	unregisterHandler(h)
	if h.stopSweep != nil {
		h.stopSweep()
	}
	if h.pending != nil {
		h.pending.Wait()
	}
	if h.capSet != nil {
		h.capSet.Close()
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
	if h.ledgerKey != "" {
		_, err := ledgerPool.Delete(h.ledgerKey)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
