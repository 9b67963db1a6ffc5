package wxqrcode

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// The templates an option left empty stands for: each reads the query
// parameter of the option's name.
const (
	defaultPath  = "{http.request.uri.query.path}"
	defaultPage  = "{http.request.uri.query.page}"
	defaultScene = "{http.request.uri.query.scene}"
	defaultWidth = "{http.request.uri.query.width}"
)

// optionError is a config error that one option is at fault for, so that
// the Caddyfile adapter can report that option's line.
type optionError struct {
	option string
	// index is which value of a repeated option (allow, sign_key, cap)
	// is at fault.
	index int
	err   error
}

func (e *optionError) Error() string { return e.err.Error() }
func (e *optionError) Unwrap() error { return e.err }

func optionErr(option string, err error) error { return &optionError{option: option, err: err} }

// checkConfig checks the config as the user wrote it, before any default
// or placeholder is applied. Validate runs it, and the Caddyfile adapter
// too, to report an error at its line.
func (h *Handler) checkConfig() error {
	api := cmp.Or(h.API, apiQRCode)
	// A link code asks WeChat nothing: it needs no credentials.
	if h.AppID == "" && api != apiLink {
		return fmt.Errorf("appid is required: the mini-program's appid, or a placeholder such as {env.WX_APPID}")
	}
	if h.Name != "" && !validName(h.Name) {
		return optionErr("name", fmt.Errorf("name may hold only letters, digits, '.', '_' and '-', not %q", h.Name))
	}
	if err := h.checkValues(); err != nil {
		return err
	}
	if err := h.checkToken(); err != nil {
		return err
	}
	if h.Secret == "" && h.usesSecret() && api != apiLink {
		return fmt.Errorf("secret is required: a placeholder such as {env.WX_SECRET} or {file./run/secrets/wx_secret}")
	}
	if err := h.checkLists(); err != nil {
		return err
	}
	if i, err := caps.Check(h.Caps); err != nil {
		return &optionError{"cap", i, err}
	}
	if h.MaxStored < 0 {
		return optionErr("max_stored", fmt.Errorf("max_stored must be at least 1 code, not %d", h.MaxStored))
	}
	if err := h.checkAPIOptions(api); err != nil {
		return err
	}
	if err := h.checkLinks(api); err != nil {
		return err
	}
	if err := h.checkOA(api); err != nil {
		return err
	}
	if err := h.checkDrawing(api); err != nil {
		return err
	}
	if err := h.checkGuard(api); err != nil {
		return err
	}
	return nil
}

// checkValues checks the options that take one value.
func (h *Handler) checkValues() error {
	values := []struct{ name, value string }{
		{"api", h.API}, {"token", h.Token}, {"errors", h.Errors},
		{"width", h.Width}, {"line_color", h.LineColor}, {"env_version", h.EnvVersion},
		{"auto_color", h.AutoColor}, {"is_hyaline", h.IsHyaline}, {"check_path", h.CheckPath},
	}
	for _, v := range values {
		if err := checkValue(v.name, v.value); err != nil {
			return optionErr(v.name, err)
		}
	}
	if err := checkAPIBase(h.APIBase, h.Token == tokenNone); err != nil {
		return optionErr("api_base", err)
	}
	if h.Timeout < 0 || time.Duration(h.Timeout) > maxTimeout {
		return optionErr("timeout", fmt.Errorf("timeout must be at most 1h and not negative (0 means the default, 10s)"))
	}
	if h.CacheDir != "" && h.StorageRaw != nil {
		return optionErr("storage", fmt.Errorf("use either cache_dir or storage, not both"))
	}
	return nil
}

// checkLists checks the values of allow and sign_key.
func (h *Handler) checkLists() error {
	for i, g := range h.Allow {
		if g == "" {
			return &optionError{"allow", i, fmt.Errorf("allow: empty glob; use * to allow any path")}
		}
	}
	for i, k := range h.SignKey {
		if k == "" {
			return &optionError{"sign_key", i, fmt.Errorf("sign_key: empty key")}
		}
	}
	return nil
}

// checkAPIOptions refuses an option that the api does not take.
func (h *Handler) checkAPIOptions(api string) error {
	options := []struct{ name, value, apis string }{
		{"path", h.Path, apiQRCode + " " + apiWxaCode + " " + apiURLLink + " " + apiScheme + " " + apiShortLink},
		{"page", h.Page, apiUnlimited},
		{"scene", h.Scene, apiUnlimited + " " + apiOATemporary + " " + apiOAPermanent},
		{"auto_color", h.AutoColor, apiWxaCode + " " + apiUnlimited},
		{"line_color", h.LineColor, apiWxaCode + " " + apiUnlimited},
		{"is_hyaline", h.IsHyaline, apiWxaCode + " " + apiUnlimited},
		{"env_version", h.EnvVersion, apiWxaCode + " " + apiUnlimited + " " + apiURLLink + " " + apiScheme},
		{"check_path", h.CheckPath, apiUnlimited},
	}
	for _, o := range options {
		if o.value != "" && !strings.Contains(o.apis, api) {
			return optionErr(o.name, fmt.Errorf("%s applies to api %s only, not %s", o.name, andList(o.apis), api))
		}
	}
	return nil
}

// checkValue rejects a bad value of a single option. Templates are checked
// per request instead.
func checkValue(name, value string) error {
	if value == "" || (strings.Contains(value, "{") && name != "api" && name != "token" && name != "errors") {
		return nil
	}
	var err error
	switch name {
	case "api":
		if value != apiQRCode && value != apiWxaCode && value != apiUnlimited && !isOA(value) && value != apiLink && !isWxaLink(value) {
			return fmt.Errorf("api must be qrcode, wxacode, unlimited, oa_temporary, oa_permanent, link, urllink, scheme or shortlink, not %q", value)
		}
	case "token":
		if value != tokenStable && value != tokenClassic && value != tokenURL && value != tokenNone {
			return fmt.Errorf("token must be stable, classic, url <url> or none, not %q", value)
		}
	case "errors":
		if value != errorsJSON && value != errorsCaddy {
			return fmt.Errorf("errors must be json or caddy, not %q", value)
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
	// The parsers' errors are WeChat's invalid-argument errors, for
	// requests; a config error is their message alone.
	if werr := (*wechat.Error)(nil); errors.As(err, &werr) {
		return errors.New(werr.Message)
	}
	return err
}

// checkAPIBase checks api_base, unless it is empty or a placeholder,
// checked once resolved. noToken says no secret or token travels to it,
// so that plain http may go to any host: WeChat Cloud Hosting's open API
// service is http://api.weixin.qq.com, seen from inside the platform.
func checkAPIBase(value string, noToken bool) error {
	if value == "" || strings.Contains(value, "{") {
		return nil
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("api_base must be an http or https URL such as %s, not %q", wechat.DefaultBaseURL, value)
	}
	if u.Scheme == "http" && !noToken && !isLoopback(u.Hostname()) {
		return fmt.Errorf("api_base needs https: the secret and the access token travel to it (plain http only to a loopback host such as 127.0.0.1, or with token none), not %q", value)
	}
	return nil
}

// usesSecret reports whether the token mode asks WeChat for tokens with
// the secret: url and none leave that to a token server or the platform.
func (h *Handler) usesSecret() bool {
	return h.Token != tokenURL && h.Token != tokenNone
}

// checkToken checks token_url and token_header, which go with token url
// only.
func (h *Handler) checkToken() error {
	if h.Token != tokenURL {
		if h.TokenURL != "" || len(h.TokenHeader) > 0 {
			return optionErr("token", fmt.Errorf("token_url and token_header go with token url only"))
		}
		return nil
	}
	if h.TokenURL == "" {
		return optionErr("token", fmt.Errorf("token url needs the token server's URL: token url <url>"))
	}
	if !strings.Contains(h.TokenURL, "{") {
		if err := checkTokenURL(h.TokenURL); err != nil {
			return optionErr("token", err)
		}
	}
	for name, values := range h.TokenHeader {
		if name == "" || len(values) == 0 {
			return optionErr("token", fmt.Errorf("token_header: each header needs a name and a value"))
		}
	}
	return nil
}

// checkTokenURL refuses a token server URL that is not http or https.
func checkTokenURL(value string) error {
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("token url must be an http or https URL, not %q", redactURL(value))
	}
	return nil
}

// redactURL hides a URL's user info and query, which may hold a
// credential, for an error message.
func redactURL(value string) string {
	u, err := url.Parse(value)
	if err != nil {
		return "an unparsable URL"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	return u.String()
}

// isLoopback reports whether host, a URL's hostname, is this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resolveConfig resolves the credentials and keys with global
// placeholders, and applies the defaults, into the handler's unexported
// fields: the config stays as the user wrote it. Provision runs it before
// it opens anything; the CLI's commands run it alone.
func (h *Handler) resolveConfig() {
	repl := caddy.NewReplacer()
	h.appID = repl.ReplaceAll(h.AppID, "")
	h.secret = repl.ReplaceAll(h.Secret, "")
	h.api = cmp.Or(h.API, apiQRCode)
	h.token = cmp.Or(h.Token, tokenStable)
	h.apiBase = strings.TrimRight(cmp.Or(repl.ReplaceAll(h.APIBase, ""), wechat.DefaultBaseURL), "/")
	h.tokenURL = repl.ReplaceAll(h.TokenURL, "")
	h.tokenHeader = nil
	for name, values := range h.TokenHeader {
		if h.tokenHeader == nil {
			h.tokenHeader = http.Header{}
		}
		for _, v := range values {
			h.tokenHeader.Add(name, repl.ReplaceAll(v, ""))
		}
	}
	h.caddyErrors = h.Errors == errorsCaddy
	h.timeout = cmp.Or(time.Duration(h.Timeout), defaultTimeout)
	h.path = cmp.Or(h.Path, defaultPath)
	h.page = cmp.Or(h.Page, defaultPage)
	h.scene = cmp.Or(h.Scene, defaultScene)
	h.width = cmp.Or(h.Width, defaultWidth)
	h.maxStored = cmp.Or(h.MaxStored, DefaultMaxStored)
	h.resolveDrawing()
	h.resolveLinkConfig()
	// A rotation key whose placeholder is unset is left out, so that a
	// config can name the old key's variable outside a rotation; the first
	// key signs and must be set (Validate).
	h.signKeys, h.signKeyNames = nil, nil
	for i, k := range h.SignKey {
		if v := repl.ReplaceAll(k, ""); v != "" || i == 0 {
			h.signKeys = append(h.signKeys, v)
			h.signKeyNames = append(h.signKeyNames, keyName(k))
		}
	}
	// The query parameters the templates read, which a request may give
	// once only.
	h.queryNames = queryNames(h.path, h.page, h.scene, h.width, h.AutoColor, h.LineColor, h.IsHyaline, h.EnvVersion, h.CheckPath, h.URL, h.linkQuery, h.CQ, h.Title)
	if len(h.SignKey) > 0 {
		h.queryNames = append(h.queryNames, sigParam)
	}
	h.cacheScope = "public"
	for _, t := range []string{h.path, h.page, h.scene, h.width, h.AutoColor, h.LineColor, h.IsHyaline, h.EnvVersion, h.CheckPath, h.URL, h.linkQuery, h.Title, h.CQ} {
		if readsBeyondURL(t) {
			h.cacheScope = "private"
		}
	}
	h.queryKeys = nil
	for _, name := range h.queryNames {
		h.queryKeys = append(h.queryKeys, queryPrefix+name)
	}
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
	for name, values := range h.TokenHeader {
		for _, v := range values {
			if !hasPlaceholder(v) {
				h.logger.Warn("a token_header value is written in the config: "+advice, zap.String("header", name))
			}
		}
	}
}
