package wxqrcode

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// The values of the api option.
const (
	apiQRCode    = "qrcode"
	apiWxaCode   = "wxacode"
	apiUnlimited = "unlimited"
	// apiOATemporary and apiOAPermanent are in oa.go.
)

// codeRequest is one request for a code, parsed once: its templates
// resolved and every default applied, so that equal images have equal
// keys, and what WeChat is to be asked. Plain data: the handler acts on
// it.
type codeRequest struct {
	api string
	// Exactly one of these is what WeChat is asked, at masterWidth.
	qrcode    *wechat.QRCodeRequest
	wxacode   *wechat.WxaCodeRequest
	unlimited *wechat.UnlimitedRequest
	oa        *wechat.OACodeRequest
	// link is the url a link code holds, drawn here.
	link string
	// wxaLink is the link WeChat is asked for (urllink, scheme,
	// shortlink), instead of a code.
	wxaLink *linkRequest
	// subject is what allow globs match: the path, the page, or an
	// official account code's scene.
	subject string
	// canonical lists every effective parameter, sorted and URL-encoded,
	// except the width: WeChat draws each code once, at masterWidth.
	canonical string
	// key is the hex SHA-256 of canonical, which names the entry in the
	// storage.
	key string
	// width is the width to serve, rendered from the master.
	width int
	// visitors are the values of the per-visitor caps' templates.
	visitors []string
	// sig is the request's signature, for a route with sign_key.
	sig string
}

// cacheKey names a canonical request's entry in the storage.
func cacheKey(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:])
}

// look holds the parameters that shape the image, shared by wxacode and
// unlimited.
type look struct {
	autoColor  bool
	lineColor  *wechat.Color // nil: black
	isHyaline  bool
	envVersion string
}

// resolveRequest fills the handler's templates from repl and checks the
// result as WeChat would, so that a bad request spends no call. The width
// is checked last: it is not signed, so a signed route checks the
// signature before it refuses a width, and a width's error comes with
// the code request resolved.
func (h *Handler) resolveRequest(repl *caddy.Replacer) (*codeRequest, error) {
	get := func(tmpl string) string { return repl.ReplaceAll(tmpl, "") }
	lk, err := h.resolveLook(get)
	if err != nil {
		return nil, err
	}
	cr := &codeRequest{api: h.api}
	ps := make(params, 0, 10)
	ps = append(ps, param{"api", h.api}, param{"appid", h.appID})
	// Each request type validates itself as WeChat would; the client checks
	// again, as a library must, which costs nothing next to a call.
	var validate func() error
	switch h.api {
	case apiQRCode:
		cr.qrcode = &wechat.QRCodeRequest{Path: get(h.path), Width: masterWidth}
		cr.subject, validate = cr.qrcode.Path, cr.qrcode.Validate
	case apiWxaCode:
		cr.wxacode = &wechat.WxaCodeRequest{
			Path: get(h.path), Width: masterWidth, AutoColor: lk.autoColor,
			LineColor: lk.lineColor, IsHyaline: lk.isHyaline, EnvVersion: lk.sentEnv(),
		}
		cr.subject, validate = cr.wxacode.Path, cr.wxacode.Validate
		ps = lk.addTo(ps)
	case apiUnlimited:
		checkPath, err := parseBool("check_path", get(h.CheckPath), true)
		if err != nil {
			return nil, err
		}
		req := &wechat.UnlimitedRequest{
			Scene: get(h.scene), Page: get(h.page), Width: masterWidth, AutoColor: lk.autoColor,
			LineColor: lk.lineColor, IsHyaline: lk.isHyaline, EnvVersion: lk.sentEnv(),
		}
		if !checkPath {
			req.CheckPath = &checkPath
		}
		cr.unlimited = req
		cr.subject, validate = req.Page, req.Validate
		ps = append(lk.addTo(ps), param{"scene", req.Scene}, param{"page", req.Page}, param{"check_path", strconv.FormatBool(checkPath)})
	case apiOATemporary, apiOAPermanent:
		ps = h.resolveOA(cr, get(h.scene), ps)
		validate = cr.oa.Validate
	case apiLink:
		if ps, err = h.resolveLink(cr, get(h.URL), ps); err != nil {
			return nil, err
		}
		validate = func() error { return nil }
	case apiURLLink, apiScheme, apiShortLink:
		ps = h.resolveWxaLink(cr, get, lk, ps)
		validate = cr.wxaLink.validate
	}
	if err := validate(); err != nil {
		return nil, err
	}
	if cr.api == apiQRCode || cr.api == apiWxaCode {
		ps = append(ps, param{"path", cr.subject})
	}
	cr.canonical = ps.encode()
	cr.key = cacheKey(cr.canonical)
	for _, c := range h.Caps {
		if c.By != "" {
			cr.visitors = append(cr.visitors, get(c.By))
		}
	}
	if cr.wxaLink != nil {
		return cr, h.resolveCQ(cr, get)
	}
	if cr.width, err = parseWidth(get(h.width)); err != nil {
		return cr, err
	}
	return cr, nil
}

func (h *Handler) resolveLook(get func(string) string) (look, error) {
	var lk look
	var err error
	if h.api == apiQRCode {
		return lk, nil
	}
	if lk.autoColor, err = parseBool("auto_color", get(h.AutoColor), false); err != nil {
		return lk, err
	}
	if lk.isHyaline, err = parseBool("is_hyaline", get(h.IsHyaline), false); err != nil {
		return lk, err
	}
	if lk.lineColor, err = parseColor(get(h.LineColor)); err != nil {
		return lk, err
	}
	if lk.autoColor {
		lk.lineColor = nil // WeChat ignores it then
	}
	lk.envVersion = get(h.EnvVersion)
	if lk.envVersion == "" {
		lk.envVersion = wechat.EnvRelease
	}
	return lk, nil
}

// sentEnv leaves WeChat's default out of the call.
func (lk look) sentEnv() string {
	if lk.envVersion == wechat.EnvRelease {
		return ""
	}
	return lk.envVersion
}

func (lk look) addTo(ps params) params {
	color := "0,0,0"
	if lk.lineColor != nil {
		color = fmt.Sprintf("%d,%d,%d", lk.lineColor.R, lk.lineColor.G, lk.lineColor.B)
	}
	if lk.autoColor {
		color = "auto"
	}
	return append(ps,
		param{"auto_color", strconv.FormatBool(lk.autoColor)},
		param{"line_color", color},
		param{"is_hyaline", strconv.FormatBool(lk.isHyaline)},
		param{"env_version", lk.envVersion})
}

type param struct{ name, value string }

// params are a request's effective parameters, unordered.
type params []param

// encode gives the canonical form: sorted by name, URL-encoded as
// url.Values.Encode does (the README spells it out for signing backends),
// without building a map on every request.
func (ps params) encode() string {
	slices.SortFunc(ps, func(a, b param) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.value))
	}
	return b.String()
}

// invalidArg is a local error with WeChat's code for invalid arguments.
func invalidArg(format string, args ...any) error {
	return &wechat.Error{Code: wechat.CodeInvalidArgs, Message: fmt.Sprintf(format, args...)}
}

// parseWidth reads a width; empty means WeChat's default.
func parseWidth(s string) (int, error) {
	if s == "" {
		return wechat.DefaultWidth, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < wechat.MinWidth || n > wechat.MaxWidth {
		return 0, invalidArg("width must be a whole number from %d to %d, not %s", wechat.MinWidth, wechat.MaxWidth, quoteShort(s))
	}
	return n, nil
}

// quoteShort quotes a value from the request for an error message, cut
// to a length that names it without echoing a page of it.
func quoteShort(s string) string {
	const most = 16
	if len(s) > most {
		return strconv.Quote(strings.ToValidUTF8(s[:most], "")) + "..."
	}
	return strconv.Quote(s)
}

func parseBool(name, s string, def bool) (bool, error) {
	if s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, invalidArg("%s must be true or false", name)
	}
	return b, nil
}

// parseColor reads "r,g,b" (each 0..255) or "#rrggbb"; empty means black.
// Black is returned as nil so that it keys like the default.
func parseColor(s string) (*wechat.Color, error) {
	if s == "" {
		return nil, nil
	}
	var c [3]int
	var err error
	if hexa, ok := strings.CutPrefix(s, "#"); ok {
		var b []byte
		if b, err = hex.DecodeString(hexa); err == nil && len(b) == 3 {
			c = [3]int{int(b[0]), int(b[1]), int(b[2])}
		} else {
			err = fmt.Errorf("bad hex colour")
		}
	} else {
		parts := strings.Split(s, ",")
		if len(parts) != 3 {
			err = fmt.Errorf("want three components")
		}
		for i := 0; err == nil && i < 3; i++ {
			c[i], err = strconv.Atoi(strings.TrimSpace(parts[i]))
			if err == nil && (c[i] < 0 || c[i] > 255) {
				err = fmt.Errorf("component out of range")
			}
		}
	}
	if err != nil {
		return nil, invalidArg("line_color must be r,g,b with each 0 to 255, or #rrggbb")
	}
	if c == [3]int{} {
		return nil, nil
	}
	return &wechat.Color{R: c[0], G: c[1], B: c[2]}, nil
}

// globMatch reports whether s matches pattern, in which * stands for any
// run of bytes, / and ? included (paths carry queries), and every other
// byte for itself.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}

// queryPrefix starts the placeholders of query parameters.
const queryPrefix = "http.request.uri.query."

// queryPlaceholder finds the query parameters a template reads.
var queryPlaceholder = regexp.MustCompile(`\{http\.request\.uri\.query\.([^}]+)\}`)

// queryNames lists the query parameters the templates read.
func queryNames(templates ...string) []string {
	var names []string
	for _, t := range templates {
		for _, m := range queryPlaceholder.FindAllStringSubmatch(t, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
	}
	return names
}

// parse reads r, a request prepared by Caddy, once: its query (which
// must parse, and give each parameter the templates read once), the
// templates resolved, and the result checked against WeChat's rules. A
// code request with an error is one whose width is bad: the width is not
// signed, so the signature is checked before the width is refused.
func (h *Handler) parse(r *http.Request) (*codeRequest, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// A malformed query still yields the parameters it could parse.
		return &codeRequest{sig: query.Get(sigParam)}, notResolved(invalidArg("the query string is malformed"))
	}
	for _, n := range h.queryNames {
		if len(query[n]) > 1 {
			return &codeRequest{sig: query.Get(sigParam)}, notResolved(invalidArg("%s is given more than once", n))
		}
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// Caddy's replacer would parse the query again for each placeholder.
	for i, name := range h.queryNames {
		repl.Set(h.queryKeys[i], query.Get(name))
	}
	cr, err := h.resolveRequest(repl)
	if cr == nil {
		cr = &codeRequest{}
		err = notResolved(err)
	}
	cr.sig = query.Get(sigParam)
	return cr, err
}

// unresolved marks a request that does not resolve to a code request: on
// a signed route it is refused as wrongly signed.
type unresolved struct{ error }

func (u unresolved) Unwrap() error { return u.error }

func notResolved(err error) error { return unresolved{err} }

// authorize checks what parse made of a request: on a signed route, the
// signature first, so that only a signed request learns anything about
// its inputs or allow; then parse's error, if any; then allow.
func (h *Handler) authorize(cr *codeRequest, parseErr error) error {
	if len(h.signKeys) > 0 {
		if cr.sig == "" {
			return localProblem(http.StatusForbidden, codeSigMissing, sigMissingMessage)
		}
		if errors.As(parseErr, new(unresolved)) {
			h.logger.Debug("a signed request that does not resolve is refused as wrongly signed", zap.Error(parseErr))
			return localProblem(http.StatusForbidden, codeSigInvalid, sigInvalidMessage)
		}
		if err := checkSignature(h.signKeys, cr.canonical, cr.sig); err != nil {
			return err
		}
	}
	if parseErr != nil {
		return parseErr
	}
	return h.checkAllowed(cr)
}

// resolveFor parses r and checks allow, without a signature: what sign
// signs.
func (h *Handler) resolveFor(r *http.Request) (*codeRequest, error) {
	cr, err := h.parse(r)
	if err != nil {
		return cr, err
	}
	return cr, h.checkAllowed(cr)
}

func (h *Handler) checkAllowed(cr *codeRequest) error {
	if !h.allowed(cr.subject) {
		return localProblem(http.StatusForbidden, codeNotAllowed, "wxqrcode: this path may not be generated here (see allow)")
	}
	return nil
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

// checkSignature returns the problem with a request's signature, or nil.
func checkSignature(keys []string, canonical, sig string) error {
	if sig == "" {
		return localProblem(http.StatusForbidden, codeSigMissing, sigMissingMessage)
	}
	if !signatureValid(keys, canonical, sig) {
		return localProblem(http.StatusForbidden, codeSigInvalid, sigInvalidMessage)
	}
	return nil
}

const (
	sigMissingMessage = "wxqrcode: this URL must be signed (sig is missing)"
	sigInvalidMessage = "wxqrcode: the signature does not match the request"
)

// validAppID keeps the appid usable in a storage key. WeChat appids are
// "wx" and 16 hex digits.
func validAppID(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}
