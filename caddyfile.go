package wxqrcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("wxqrcode", parseCaddyfile)
	// Before respond: it answers the request itself, and a catch-all respond
	// written after it should not shadow it.
	httpcaddyfile.RegisterDirectiveOrder("wxqrcode", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	wxqrcode [<matcher>] {
//	    name        <name>
//	    appid       <appid>
//	    secret      <secret>
//	    api         qrcode|wxacode|unlimited|oa_temporary|oa_permanent|link|urllink|scheme|shortlink
//	    url         <template>
//	    format      png|svg
//	    level       L|M|Q|H
//	    expire      <duration>
//	    path        <template>
//	    query       <template>
//	    reply       redirect|json|page
//	    cq          <template>
//	    permanent   true|false
//	    title       <template>
//	    page        <template>
//	    scene       <template>
//	    width       <template>
//	    auto_color  <template>
//	    line_color  <template>
//	    is_hyaline  <template>
//	    env_version <template>
//	    check_path  <template>
//	    cache_dir   <dir>
//	    storage     <module> { ... }
//	    token       stable|classic|none|url <url> [{
//	        header <name> <value>
//	    }]
//	    api_base    <url>
//	    timeout     <duration>          (0: the default, 10s)
//	    allow       <glob...>
//	    sign_key    <key...>
//	    cap         <n> [per <duration> [by <template>]]
//	    errors      json|caddy
//	    memory_cache <size>|off
//	    max_stored  <n>
//	}
//
// appid is required, and secret with token stable or classic, except for
// api link, which asks WeChat nothing; its url must write its scheme and
// host out. format and level go with the codes drawn here (link, oa_*).
// When requests choose the codes (a path,
// page, scene or line_color template reads the request, and no allow list
// of literal paths pins it), qrcode, wxacode and oa_permanent need sign_key
// or a cap without per (a total budget), and unlimited and oa_temporary
// need sign_key or a cap. urllink and scheme are guarded like unlimited,
// a permanent shortlink like qrcode; allow matches their path?query.
// expire (oa_temporary, urllink, scheme) is 60s to 30d. max_stored
// (default 10000) bounds the codes kept in the storage.
// allow, sign_key and cap may repeat. Templates are Caddy placeholders
// and text, resolved per request.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	file, line := d.File(), d.Line()
	if d.NextArg() {
		return d.ArgErr()
	}
	// lines holds the line of each option's values, so that an error in
	// the config is reported at the option at fault.
	lines := map[string][]int{}
	for d.NextBlock(0) {
		name, at := d.Val(), d.Line()
		values, err := h.unmarshalOption(d, name)
		if err != nil {
			return err
		}
		for range values {
			lines[name] = append(lines[name], at)
		}
	}
	if err := h.checkConfig(); err != nil {
		var oerr *optionError
		if errors.As(err, &oerr) && oerr.index < len(lines[oerr.option]) {
			line = lines[oerr.option][oerr.index]
		}
		return fmt.Errorf("wxqrcode: %s, at %s:%d", caddyfileForm(err.Error()), file, line)
	}
	blocks.note(h, fmt.Sprintf("%s:%d", file, line))
	return nil
}

// blocks remembers where the Caddyfile adapter read each wxqrcode block,
// by the block's JSON, so that an error found only once placeholders are
// resolved, at load, names the block's line when the Caddyfile was
// adapted in the same process (caddy run, start, validate). A config
// loaded as JSON, or sent to a running Caddy by caddy reload, has none.
var blocks = blockLines{at: map[string][]string{}}

type blockLines struct {
	mu sync.Mutex
	at map[string][]string // block's JSON digest -> file:line
}

// maxBlocks bounds what blocks remembers in a process that adapts many
// Caddyfiles: past it, it starts over.
const maxBlocks = 1024

func (b *blockLines) note(h *Handler, at string) {
	key := blockKey(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.at) >= maxBlocks {
		clear(b.at)
	}
	if !slices.Contains(b.at[key], at) {
		b.at[key] = append(b.at[key], at)
	}
}

// where is ", at <file:line>" for a block read from a Caddyfile, with
// every line an identical block was read at, or "".
func (b *blockLines) where(key string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.at[key]) == 0 {
		return ""
	}
	return ", at " + strings.Join(b.at[key], " and ")
}

// blockKey is the digest of a block's config as the user wrote it.
func blockKey(h *Handler) string {
	raw, err := json.Marshal(h)
	if err != nil {
		return ""
	}
	return digest(string(raw))
}

// options are the names the block takes, for "did you mean".
var options = []string{
	"appid", "secret", "api", "expire", "path", "page", "scene", "width",
	"auto_color", "line_color", "is_hyaline", "env_version", "check_path",
	"cache_dir", "storage", "token", "api_base", "timeout", "allow",
	"sign_key", "cap", "errors", "memory_cache", "max_stored",
	"url", "format", "level",
	"query", "reply", "cq", "permanent", "title",
}

// didYouMean is " (did you mean <option>?)" for the option closest to
// name, when one is a typo away, or "".
func didYouMean(name string) string {
	best, bestDist := "", 3
	for _, o := range options {
		if d := editDistance(name, o); d < bestDist {
			best, bestDist = o, d
		}
	}
	// One edit in a short name, two in a longer one.
	if best == "" || (bestDist == 2 && len(name) < 5) {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of adjacent letters that turn a into b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// caddyfileForm writes the request placeholders in msg as a Caddyfile
// writes them, {query.scene} for {http.request.uri.query.scene}: the
// adapter expands the short forms before the directive sees them, and a
// message should quote what the user wrote.
func caddyfileForm(msg string) string {
	return longPlaceholder.ReplaceAllStringFunc(msg, func(p string) string {
		if short := httpcaddyfile.WasReplacedPlaceholderShorthand(p); short != "" {
			return short
		}
		for _, s := range shortPrefixes {
			if name, ok := strings.CutPrefix(p, s.long); ok {
				return s.short + name
			}
		}
		return p
	})
}

var longPlaceholder = regexp.MustCompile(`\{http\.[^{}]+\}`)

// shortPrefixes are the Caddyfile's short forms of placeholders with a
// name, longest first where one prefix holds another (as in Caddy's
// httpcaddyfile.NewShorthandReplacer).
var shortPrefixes = []struct{ long, short string }{
	{"{http.request.uri.path.file.", "{file."},
	{"{http.request.uri.path.", "{path."},
	{"{http.request.uri.query.", "{query."},
	{"{http.request.header.", "{header."},
	{"{http.request.cookie.", "{cookie."},
	{"{http.request.host.labels.", "{labels."},
	{"{http.regexp.", "{re."},
	{"{http.vars.", "{vars."},
	{"{http.reverse_proxy.", "{rp."},
	{"{http.intercept.", "{resp."},
	{"{http.error.", "{err."},
	{"{http.matchers.file.", "{file_match."},
}

// unmarshalOption reads the option name and its arguments, and returns
// how many values it gave: one, or each glob, key or cap of a repeated
// option. Values are checked once the block is read, by checkConfig.
func (h *Handler) unmarshalOption(d *caddyfile.Dispenser, name string) (int, error) {
	if field := h.stringOption(name); field != nil {
		if *field != "" {
			return 0, d.Errf("%s given twice", name)
		}
		return 1, oneArg(d, func(v string) error { *field = v; return nil })
	}
	switch name {
	case "timeout":
		return 1, oneArg(d, func(v string) error {
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("bad timeout %q: %v", v, err)
			}
			h.Timeout = caddy.Duration(dur)
			return nil
		})
	case "expire":
		if h.Expire != 0 {
			return 0, d.Errf("expire given twice")
		}
		return 1, oneArg(d, func(v string) error {
			e, err := parseExpire(v)
			if err != nil {
				return d.WrapErr(err)
			}
			h.Expire = e
			return nil
		})
	case "allow", "sign_key":
		values := d.RemainingArgs()
		if len(values) == 0 {
			return 0, d.ArgErr()
		}
		if name == "allow" {
			h.Allow = append(h.Allow, values...)
		} else {
			h.SignKey = append(h.SignKey, values...)
		}
		return len(values), nil
	case "cap":
		c, err := parseCap(d.RemainingArgs())
		if err != nil {
			return 0, d.WrapErr(err)
		}
		h.Caps = append(h.Caps, c)
		return 1, nil
	case "memory_cache":
		return 1, oneArg(d, func(v string) error {
			if v == "off" {
				h.MemoryCache = -1
				return nil
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > math.MaxInt64 {
				return d.Errf("memory_cache must be a size such as 64MiB, or off, not %q", v)
			}
			h.MemoryCache = int64(size)
			return nil
		})
	case "max_stored":
		return 1, oneArg(d, func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("max_stored must be a number of codes, at least 1, not %q", v)
			}
			h.MaxStored = n
			return nil
		})
	case "permanent":
		return 1, oneArg(d, func(v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return d.Errf("permanent must be true or false, not %q", v)
			}
			h.Permanent = b
			return nil
		})
	case "storage":
		return 1, h.unmarshalStorage(d)
	case "token":
		return 1, h.unmarshalToken(d)
	}
	return 0, d.Errf("unknown subdirective %q%s", name, didYouMean(name))
}

// stringOption returns the field of an option that takes one string as
// it is, or nil.
func (h *Handler) stringOption(name string) *string {
	switch name {
	case "name":
		return &h.Name
	case "appid":
		return &h.AppID
	case "secret":
		return &h.Secret
	case "api":
		return &h.API
	case "path":
		return &h.Path
	case "page":
		return &h.Page
	case "scene":
		return &h.Scene
	case "width":
		return &h.Width
	case "auto_color":
		return &h.AutoColor
	case "line_color":
		return &h.LineColor
	case "is_hyaline":
		return &h.IsHyaline
	case "env_version":
		return &h.EnvVersion
	case "check_path":
		return &h.CheckPath
	case "cache_dir":
		return &h.CacheDir
	case "errors":
		return &h.Errors
	case "api_base":
		return &h.APIBase
	case "url":
		return &h.URL
	case "format":
		return &h.Format
	case "level":
		return &h.Level
	case "query":
		return &h.Query
	case "reply":
		return &h.Reply
	case "cq":
		return &h.CQ
	case "title":
		return &h.Title
	}
	return nil
}

// oneArg hands the option's one argument to set.
func oneArg(d *caddyfile.Dispenser, set func(string) error) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if err := set(d.Val()); err != nil {
		return err
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// unmarshalToken reads token <mode>, or token url <url> with an optional
// block of header lines for the token server.
func (h *Handler) unmarshalToken(d *caddyfile.Dispenser) error {
	if h.Token != "" {
		return d.Errf("token given twice")
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	h.Token = d.Val()
	if h.Token == tokenURL {
		if !d.NextArg() {
			return d.Errf("token url needs the token server's URL: token url <url>")
		}
		h.TokenURL = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "header" {
			return d.Errf("unknown token option %q: token url takes header <name> <value> lines", d.Val())
		}
		args := d.RemainingArgs()
		if len(args) != 2 {
			return d.Errf("header takes <name> <value>; quote a value with spaces")
		}
		if h.TokenHeader == nil {
			h.TokenHeader = http.Header{}
		}
		h.TokenHeader.Add(args[0], args[1])
	}
	return nil
}

func (h *Handler) unmarshalStorage(d *caddyfile.Dispenser) error {
	if h.StorageRaw != nil {
		return d.Errf("storage given twice")
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	modName := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "caddy.storage."+modName)
	if err != nil {
		return err
	}
	if _, ok := unm.(caddy.StorageConverter); !ok {
		return d.Errf("module caddy.storage.%s is not a storage", modName)
	}
	h.StorageRaw = caddyconfig.JSONModuleObject(unm, "module", modName, nil)
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// parseCap reads the arguments of cap: <n> [per <duration> [by <template>]].
func parseCap(args []string) (Cap, error) {
	if len(args) >= 2 && args[1] == "by" {
		return Cap{}, fmt.Errorf("cap: by needs a window: cap <n> per <duration> by <template>")
	}
	if len(args) != 1 && (len(args) != 3 || args[1] != "per") && (len(args) != 5 || args[1] != "per" || args[3] != "by") {
		return Cap{}, fmt.Errorf("cap takes <n>, <n> per <duration> or <n> per <duration> by <template>")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return Cap{}, fmt.Errorf("cap: %q is not a positive number of codes", args[0])
	}
	c := Cap{Codes: n}
	if len(args) >= 3 {
		per, err := caddy.ParseDuration(args[2])
		if err != nil || per <= 0 {
			return Cap{}, fmt.Errorf("cap: %q is not a positive duration", args[2])
		}
		c.Per = caddy.Duration(per)
	}
	if len(args) == 5 {
		if args[4] == "" {
			return Cap{}, fmt.Errorf("cap: by needs a template such as {client_ip}")
		}
		c.By = args[4]
	}
	return c, nil
}
