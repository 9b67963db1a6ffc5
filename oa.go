package wxqrcode

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// The official account's parametric codes: qrcode.create gives a URL, and
// the module draws the QR code of it.
const (
	apiOATemporary = "oa_temporary"
	apiOAPermanent = "oa_permanent"
)

// maxRenewMargin bounds how long before its expiry a temporary code is
// made anew, and renewShare is that margin as a share of the code's life:
// a 30-day code is renewed an hour early, a 60-second one 6 seconds early,
// so a visitor who scans just as the page loads scans a live code.
const (
	maxRenewMargin = time.Hour
	renewShare     = 10
)

// isOA reports whether api is one of the official account's codes.
func isOA(api string) bool { return api == apiOATemporary || api == apiOAPermanent }

// andList writes space-separated names as "a, b and c": the APIs an
// option applies to, now that there may be three.
func andList(names string) string {
	f := strings.Fields(names)
	if len(f) < 2 {
		return names
	}
	return strings.Join(f[:len(f)-1], ", ") + " and " + f[len(f)-1]
}

// parseExpire reads the expire option: a temporary code's life, 60s to 30d
// in whole seconds.
func parseExpire(s string) (caddy.Duration, error) {
	d, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("expire: %q is not a duration such as 7d or 12h", s)
	}
	return caddy.Duration(d), checkExpire(d)
}

func checkExpire(d time.Duration) error {
	if d < wechat.MinOAExpire || d > wechat.MaxOAExpire || d%time.Second != 0 {
		return fmt.Errorf("expire must be whole seconds from 60s to 30d (720h), not %s", d)
	}
	return nil
}

// checkOA checks the options of the official account's codes: expire
// belongs to oa_temporary only.
func (h *Handler) checkOA(api string) error {
	if h.Expire == 0 || isWxaLink(api) {
		return nil
	}
	if api != apiOATemporary {
		return optionErr("expire", fmt.Errorf("expire applies to api oa_temporary, urllink and scheme only, not %s", api))
	}
	if err := checkExpire(time.Duration(h.Expire)); err != nil {
		return optionErr("expire", err)
	}
	return nil
}

// resolveOA makes cr a request for an official account's code with
// scene. The canonical form holds the api, appid, scene and, for a
// temporary code, its life in seconds.
func (h *Handler) resolveOA(cr *codeRequest, scene string, ps params) params {
	cr.oa = &wechat.OACodeRequest{Scene: scene, Permanent: h.api == apiOAPermanent}
	if !cr.oa.Permanent {
		cr.oa.Expire = time.Duration(h.Expire)
		if cr.oa.Expire == 0 {
			cr.oa.Expire = wechat.MaxOAExpire
		}
		ps = append(ps, param{"expire", strconv.FormatInt(int64(cr.oa.Expire/time.Second), 10)})
	}
	cr.subject = scene
	return append(ps, param{"scene", scene})
}

// redraw draws an official account's code anew at width in style from
// its content: sharper than resampling the master, and cheaper.
func redraw(master *entry, width int, style drawStyle) (*entry, error) {
	data, ct, err := style.draw(master.content, width)
	if err != nil {
		return nil, err
	}
	e := newEntry(data, ct, sha256.Sum256(data), master.stored)
	e.content = master.content
	e.setExpiry(master.expires)
	return e, nil
}

// setExpiry notes when e's code stops working, zero for never, and when
// to stop serving it: a renewal margin earlier.
func (e *entry) setExpiry(expires time.Time) {
	if expires.IsZero() {
		return
	}
	e.expires = expires
	margin := min(maxRenewMargin, expires.Sub(e.stored)/renewShare)
	e.renewAt = expires.Add(-margin)
	e.expiresHeader = []string{e.renewAt.UTC().Format(http.TimeFormat)}
}

// stale reports whether e is a temporary code due for renewal at now.
func (e *entry) stale(clock *handlerClock) bool {
	return !e.renewAt.IsZero() && !clock.Now().Before(e.renewAt)
}

// setFreshness sets Cache-Control, unless a header directive set one: a
// code that never changes is immutable; a temporary one may be kept until
// it is renewed, and no later, as Expires says too. scope is public or
// private.
func setFreshness(hdr http.Header, e *entry, scope string, clock *handlerClock) {
	if _, ok := hdr["Cache-Control"]; ok {
		return
	}
	if e.renewAt.IsZero() {
		hdr["Cache-Control"] = immutable[scope]
		return
	}
	left := max(0, e.renewAt.Sub(clock.Now())/time.Second)
	hdr["Cache-Control"] = []string{scope + ", max-age=" + strconv.FormatInt(int64(left), 10)}
	hdr["Expires"] = e.expiresHeader
}
