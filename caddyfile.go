package wxqrcode

import (
	"fmt"
	"math"
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
//	    path        <template>
//	    page        <template>
//	    scene       <template>
//	    expire      <duration>
//	    width       <template>
//	    auto_color  <template>
//	    line_color  <template>
//	    is_hyaline  <template>
//	    env_version <template>
//	    check_path  <template>
//	    cache_dir   <dir>
//	    storage     <module> { ... }
//	    token       stable|classic
//	    api_base    <url>
//	    timeout     <duration>
//	    allow       <glob...>
//	    sign_key    <key...>
//	    cap         <n> [per <duration> [by <template>]]
//	    memory_cache <size>|off
//	}
//
// appid and secret are required. When requests choose the codes (a path,
// page, scene or line_color template reads the request, and no allow list
// of literal paths pins it), qrcode, wxacode and oa_permanent need sign_key
// or a cap without per (a total budget), and unlimited and oa_temporary
// need sign_key or a cap. expire (oa_temporary) is 60s to 30d.
// allow, sign_key and cap may repeat. Templates are Caddy placeholders
// and text, resolved per request.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	file, line := d.File(), d.Line()
	if d.NextArg() {
		return d.ArgErr()
	}
	fields := map[string]*string{
		"appid":       &h.AppID,
		"secret":      &h.Secret,
		"api":         &h.API,
		"path":        &h.Path,
		"page":        &h.Page,
		"scene":       &h.Scene,
		"width":       &h.Width,
		"auto_color":  &h.AutoColor,
		"line_color":  &h.LineColor,
		"is_hyaline":  &h.IsHyaline,
		"env_version": &h.EnvVersion,
		"check_path":  &h.CheckPath,
		"cache_dir":   &h.CacheDir,
		"token":       &h.Token,
		"api_base":    &h.APIBase,
	}
	for d.NextBlock(0) {
		name := d.Val()
		if field, ok := fields[name]; ok {
			if *field != "" {
				return d.Errf("%s given twice", name)
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			*field = d.Val()
			if err := checkValue(name, *field); err != nil {
				return d.WrapErr(err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			continue
		}
		switch name {
		case "timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("bad timeout %q: %v", d.Val(), err)
			}
			if dur <= 0 || dur > maxTimeout {
				return d.Errf("timeout must be above 0 and at most 1h, not %s", d.Val())
			}
			h.Timeout = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "expire":
			if h.Expire != 0 {
				return d.Errf("expire given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			e, err := parseExpire(d.Val())
			if err != nil {
				return d.WrapErr(err)
			}
			h.Expire = e
			if d.NextArg() {
				return d.ArgErr()
			}
		case "allow":
			globs := d.RemainingArgs()
			if len(globs) == 0 {
				return d.ArgErr()
			}
			h.Allow = append(h.Allow, globs...)
		case "sign_key":
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return d.ArgErr()
			}
			h.SignKey = append(h.SignKey, keys...)
		case "cap":
			c, err := parseCap(d.RemainingArgs())
			if err != nil {
				return d.WrapErr(err)
			}
			h.Caps = append(h.Caps, c)
		case "memory_cache":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == "off" {
				h.MemoryCache = -1
			} else {
				size, err := humanize.ParseBytes(d.Val())
				if err != nil || size == 0 || size > math.MaxInt64 {
					return d.Errf("memory_cache must be a size such as 64MiB, or off, not %q", d.Val())
				}
				h.MemoryCache = int64(size)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "storage":
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
		default:
			return d.Errf("unknown subdirective %q", name)
		}
	}
	if err := h.checkConfig(); err != nil {
		return fmt.Errorf("wxqrcode: %w, at %s:%d", err, file, line)
	}
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
