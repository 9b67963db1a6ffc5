package wxqrcode

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

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
//	    appid       <appid>
//	    secret      <secret>
//	    api         qrcode|wxacode|unlimited|oa_temporary|oa_permanent
//	    expire      <duration>
//	    path        <template>
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
// appid is required, and secret with token stable or classic. When requests choose the codes (a path,
// page, scene or line_color template reads the request, and no allow list
// of literal paths pins it), qrcode, wxacode and oa_permanent need sign_key
// or a cap without per (a total budget), and unlimited and oa_temporary
// need sign_key or a cap. expire (oa_temporary) is 60s to 30d. max_stored
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
		return fmt.Errorf("wxqrcode: %w, at %s:%d", err, file, line)
	}
	return nil
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
	case "storage":
		return 1, h.unmarshalStorage(d)
	case "token":
		return 1, h.unmarshalToken(d)
	}
	return 0, d.Errf("unknown subdirective %q", name)
}

// stringOption returns the field of an option that takes one string as
// it is, or nil.
func (h *Handler) stringOption(name string) *string {
	switch name {
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
