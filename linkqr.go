package wxqrcode

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/internal/imaging"
)

// apiLink is a QR code of the app's own URL, drawn here: WeChat opens
// the mini-program a rule of the admin console maps its prefix to
// ("扫普通链接二维码打开小程序"), any other scanner opens the URL. Nothing
// is asked of WeChat.
const apiLink = "link"

// The values of the format option.
const (
	formatPNG = "png"
	formatSVG = "svg"
)

// maxLinkURL bounds a link code's url, in bytes: a QR code holds at
// most 2,331 bytes at level M, and a code that dense is hard to scan.
const maxLinkURL = 1024

// drawStyle is how the module draws a code: as an SVG or a PNG, at an
// error correction level.
type drawStyle struct {
	svg   bool
	level imaging.Level
}

// defaultStyle, the zero drawStyle, is a PNG at level M.
var defaultStyle = drawStyle{}

// plain reports whether s is how an official account's master is drawn
// and stored: a PNG at level M.
func (s drawStyle) plain() bool { return s == defaultStyle }

// suffix tells a drawing's key in memory from another style's of the
// same code: routes with different styles share the memory cache.
func (s drawStyle) suffix() string {
	if s.plain() {
		return ""
	}
	f := formatPNG
	if s.svg {
		f = formatSVG
	}
	return ";" + f + ";" + s.level.String()
}

// draw draws content width pixels square in the style.
func (s drawStyle) draw(content string, width int) (data []byte, contentType string, err error) {
	if s.svg {
		data, err = imaging.DrawQRSVG(content, width, s.level)
		return data, "image/svg+xml", err
	}
	data, err = imaging.DrawQR(content, width, s.level)
	return data, "image/png", err
}

// resolveDrawing reads format, level and the site of a link's url, which
// checkDrawing checked.
func (h *Handler) resolveDrawing() {
	h.style = drawStyle{svg: h.Format == formatSVG}
	if h.Level != "" {
		h.style.level, _ = imaging.ParseLevel(h.Level)
	}
	if h.URL != "" {
		h.linkScheme, h.linkHost, _ = linkOrigin(h.URL)
	}
}

// checkDrawing checks url, format and level: url belongs to link, which
// needs it, and format and level to the codes drawn here.
func (h *Handler) checkDrawing(api string) error {
	if h.URL != "" && api != apiLink {
		return optionErr("url", fmt.Errorf("url applies to api link only, not %s", api))
	}
	for _, o := range []struct{ name, value string }{{"format", h.Format}, {"level", h.Level}} {
		if o.value != "" && api != apiLink && !isOA(api) {
			return optionErr(o.name, fmt.Errorf("%s applies to the codes drawn here, api link, oa_temporary and oa_permanent, not %s", o.name, api))
		}
	}
	if h.Format != "" && h.Format != formatPNG && h.Format != formatSVG {
		return optionErr("format", fmt.Errorf("format must be png or svg, not %q", h.Format))
	}
	if h.Level != "" {
		if _, err := imaging.ParseLevel(h.Level); err != nil {
			return optionErr("level", err)
		}
	}
	if api != apiLink {
		return nil
	}
	if len(h.Caps) > 0 {
		return optionErr("cap", fmt.Errorf("cap does not apply to api link: its codes are drawn here and spend nothing at WeChat"))
	}
	if h.URL == "" {
		return fmt.Errorf("api link needs url: the URL the code holds, such as 'url https://shop.example.com/q/item/{query.id}'")
	}
	if _, _, err := linkOrigin(h.URL); err != nil {
		return optionErr("url", err)
	}
	return nil
}

// linkOrigin returns the scheme and host a url template fixes. They must
// be written out before any placeholder, the host ended by a / or ?
// (or the template's end): a template that lets the request choose
// them would draw codes for any site, under the name of this one.
func linkOrigin(tmpl string) (scheme, host string, err error) {
	why := func(reason string) error {
		return fmt.Errorf("url %s %s: write its scheme and host out, as in https://shop.example.com/q/{query.id}, "+
			"or a stranger could draw codes for any site under your name", tmpl, reason)
	}
	if strings.Contains(tmpl, "#") {
		return "", "", fmt.Errorf("url %s has a fragment (#), which no server sees: leave it out", tmpl)
	}
	scheme, rest, ok := strings.Cut(tmpl, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return "", "", why("does not start with http:// or https://")
	}
	end := strings.IndexAny(rest, "/?{")
	if end < 0 {
		end = len(rest)
	}
	host = rest[:end]
	if end < len(rest) && rest[end] == '{' {
		return "", "", why("lets the request choose the host")
	}
	u, err := url.Parse(scheme + "://" + host)
	if err != nil || u.Host != host || u.Hostname() == "" || u.User != nil {
		return "", "", why("has no valid host")
	}
	return scheme, host, nil
}

// resolveLink makes cr a request for the link code of the url resolved,
// or refuses a url that is too long, not a URL, or not on the
// configured site.
func (h *Handler) resolveLink(cr *codeRequest, resolved string, ps params) (params, error) {
	if len(resolved) > maxLinkURL {
		return nil, invalidArg("the url is %d bytes; at most %d", len(resolved), maxLinkURL)
	}
	// Spaces and control characters make no URL, and # a fragment no
	// server sees.
	if strings.ContainsFunc(resolved, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) {
		return nil, invalidArg("the url holds a space, a control character or a #")
	}
	u, err := url.Parse(resolved)
	if err != nil || u.Scheme != h.linkScheme || u.Host != h.linkHost || u.User != nil {
		return nil, invalidArg("the url is not a URL on %s://%s", h.linkScheme, h.linkHost)
	}
	cr.link = resolved
	cr.subject = resolved
	return append(ps, param{"url", resolved}), nil
}

// provisionLink opens what a link route uses: no storage, token or
// counts, as nothing is asked of WeChat or stored.
func (h *Handler) provisionLink(ctx caddy.Context) error {
	h.clock = newClock()
	// Link codes of every storage share one memory cache per bound:
	// their keys hold all they are drawn from.
	h.storeID = apiLink
	if err := h.openMemoryCache(ctx); err != nil {
		return err
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

// drawn returns a link code at the width and in the style asked: from
// memory, else drawn now, once however many requests wait, through the
// draws' bound.
func (h *Handler) drawn(ctx context.Context, cr *codeRequest) (*entry, string, error) {
	key := cr.canonical + "#" + strconv.Itoa(cr.width) + h.style.suffix()
	if h.mem != nil {
		if e, ok := h.mem.width(key, h.clock); ok {
			return e, outcomeMemoryHit, nil
		}
	}
	e, err := drawOnce(ctx, h.logger, h.storeID+"|"+key, cr.key, false, func(ctx context.Context) (*entry, error) {
		return h.drawLink(ctx, cr, key)
	})
	if err != nil {
		return nil, "", err
	}
	return e, outcomeRendered, nil
}

// drawLink draws the code key names, and keeps it in memory only: it is
// drawn again at no cost but CPU.
func (h *Handler) drawLink(ctx context.Context, cr *codeRequest, key string) (*entry, error) {
	return h.drawInMemory(ctx, key, func() (*entry, error) {
		start := time.Now()
		data, ct, err := h.style.draw(cr.link, cr.width)
		if err != nil {
			return nil, err
		}
		e := newEntry(data, ct, sha256.Sum256(data), h.clock.Now().UTC().Truncate(time.Second))
		h.logger.Debug("drew link code",
			zap.String("key", cr.key),
			zap.Int("width", cr.width),
			zap.Int("bytes", len(data)),
			zap.Duration("duration", time.Since(start)))
		return e, nil
	})
}
