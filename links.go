package wxqrcode

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// Links into the mini-program: a URL Link, a URL Scheme or a Short Link,
// asked of WeChat once and kept until shortly before it expires, like an
// official account's temporary code, and answered as a redirect, WeChat's
// JSON or a page to tap.
const (
	apiURLLink   = "urllink"
	apiScheme    = "scheme"
	apiShortLink = "shortlink"

	replyRedirect = "redirect"
	replyJSON     = "json"
	replyPage     = "page"

	defaultLinkQuery = "{http.request.uri.query.query}"
	// maxCQ bounds cq once URL-encoded, as WeChat's URL Links take it.
	maxCQ = 256
	// linkType is the content type a link is stored under: the entry's
	// bytes are the link.
	linkType = "text/uri-list"
)

// isWxaLink reports whether api makes links rather than codes.
func isWxaLink(api string) bool {
	return api == apiURLLink || api == apiScheme || api == apiShortLink
}

// linkRequest is what WeChat is asked for a link, and what each visitor
// adds to it.
type linkRequest struct {
	urllink *wechat.URLLinkRequest
	scheme  *wechat.SchemeRequest
	short   *wechat.ShortLinkRequest
	// life is the link's life, 0 for a permanent short link.
	life time.Duration
	// cq is the visitor's value appended to a URL Link, never part of
	// the key.
	cq string
}

func (l *linkRequest) validate() error {
	switch {
	case l.urllink != nil:
		return l.urllink.Validate()
	case l.scheme != nil:
		return l.scheme.Validate()
	}
	return l.short.Validate()
}

// checkLinks checks the options of links, and refuses them on codes: a
// short link is pasted inside WeChat, so it is answered as JSON only.
func (h *Handler) checkLinks(api string) error {
	permanent := ""
	if h.Permanent {
		permanent = "true"
	}
	options := []struct{ name, value, apis string }{
		{"query", h.Query, "urllink scheme shortlink"},
		{"reply", h.Reply, "urllink scheme shortlink"},
		{"cq", h.CQ, "urllink"},
		{"title", h.Title, "shortlink"},
		{"permanent", permanent, "shortlink"},
	}
	for _, o := range options {
		if o.value != "" && !strings.Contains(" "+o.apis+" ", " "+api+" ") {
			return optionErr(o.name, fmt.Errorf("%s applies to api %s only, not %s", o.name, andList(o.apis), api))
		}
	}
	if !isWxaLink(api) {
		return nil
	}
	if h.Width != "" {
		return optionErr("width", fmt.Errorf("width applies to codes, not to api %s", api))
	}
	switch h.Reply {
	case "", replyRedirect, replyJSON, replyPage:
	default:
		return optionErr("reply", fmt.Errorf("reply must be redirect, json or page, not %q", h.Reply))
	}
	if api == apiShortLink {
		if h.Reply != "" && h.Reply != replyJSON {
			return optionErr("reply", fmt.Errorf("a short link (#小程序://...) is pasted inside WeChat, not opened by a browser: reply json only"))
		}
		if h.Expire != 0 {
			return optionErr("expire", fmt.Errorf("a short link lives 30 days, or for ever with permanent true: it takes no expire"))
		}
	}
	if h.Expire != 0 {
		if d := time.Duration(h.Expire); d < wechat.MinLinkExpire || d > wechat.MaxLinkExpire || d%time.Second != 0 {
			return optionErr("expire", fmt.Errorf("expire must be whole seconds from 60s to 30d (720h), not %s", d))
		}
	}
	return nil
}

// resolveLinkConfig applies the links' defaults: the page's query from
// the request's query, and a redirect, but JSON for short links.
func (h *Handler) resolveLinkConfig() {
	h.linkQuery, h.reply = "", ""
	if !isWxaLink(h.api) {
		return
	}
	h.linkQuery = h.Query
	if h.linkQuery == "" {
		h.linkQuery = defaultLinkQuery
	}
	h.reply = h.Reply
	switch {
	case h.reply != "":
	case h.api == apiShortLink:
		h.reply = replyJSON
	default:
		h.reply = replyRedirect
	}
	// A link has no width: its template is not read.
	h.width = ""
}

// resolveWxaLink makes cr a request for a link. The canonical form holds
// the api, appid, path, query and, for URL Links and Schemes, the
// env_version and life in seconds, for Short Links the title and
// whether it is permanent.
func (h *Handler) resolveWxaLink(cr *codeRequest, get func(string) string, lk look, ps params) params {
	path, query := get(h.path), get(h.linkQuery)
	cr.subject = path
	if query != "" {
		cr.subject += "?" + query
	}
	l := &linkRequest{life: time.Duration(h.Expire)}
	if l.life == 0 {
		l.life = wechat.MaxLinkExpire
	}
	ps = append(ps, param{"path", path}, param{"query", query})
	if h.api == apiShortLink {
		l.short = &wechat.ShortLinkRequest{PageURL: cr.subject, Title: get(h.Title), Permanent: h.Permanent}
		if h.Permanent {
			l.life = 0
		}
		ps = append(ps, param{"title", l.short.Title}, param{"permanent", strconv.FormatBool(h.Permanent)})
	} else {
		t := wechat.LinkTarget{Path: path, Query: query, EnvVersion: lk.sentEnv(), Expire: l.life}
		if h.api == apiURLLink {
			l.urllink = &wechat.URLLinkRequest{LinkTarget: t}
		} else {
			l.scheme = &wechat.SchemeRequest{LinkTarget: t}
		}
		ps = append(ps, param{"env_version", lk.envVersion}, param{"expire", strconv.FormatInt(int64(l.life/time.Second), 10)})
	}
	cr.wxaLink = l
	return ps
}

// resolveCQ reads the visitor's cq: it is not signed, so a signed route
// checks the signature before it refuses one.
func (h *Handler) resolveCQ(cr *codeRequest, get func(string) string) error {
	if h.CQ == "" {
		return nil
	}
	cr.wxaLink.cq = get(h.CQ)
	if n := len(url.QueryEscape(cr.wxaLink.cq)); n > maxCQ {
		return invalidArg("cq must be at most %d characters once URL-encoded, not %d", maxCQ, n)
	}
	return nil
}

// callLink asks WeChat for the link: its life counted from before the
// call, as WeChat counts, so never late.
func (h *Handler) callLink(ctx context.Context, l *linkRequest) (*fetched, error) {
	start := h.clock.Now()
	var link *wechat.Link
	var err error
	switch {
	case l.urllink != nil:
		link, err = h.client.GenerateURLLink(ctx, l.urllink)
	case l.scheme != nil:
		link, err = h.client.GenerateScheme(ctx, l.scheme)
	default:
		link, err = h.client.GenerateShortLink(ctx, l.short)
	}
	if err != nil {
		return nil, err
	}
	f := &fetched{numUsed: -1, content: link.URL}
	if l.life > 0 {
		f.expiry = start.Add(l.life)
	}
	return f, nil
}

// linkEntry makes an entry of a link: no image, the link as its bytes.
func linkEntry(f *fetched, now time.Time) *entry {
	data := []byte(f.content)
	e := newEntry(data, linkType, sha256.Sum256(data), now.UTC().Truncate(time.Second))
	e.content = f.content
	e.setExpiry(f.expiry)
	return e
}

// entryWhole reports whether bytes stored with a content type are what
// was written: a whole image, or a link that is its content.
func entryWhole(contentType string, data []byte, content string) bool {
	if contentType == linkType {
		return content != "" && string(data) == content
	}
	return wechat.ImageType(data) == contentType
}

// linkField names the link in WeChat's reply of each api.
var linkField = map[string]string{apiURLLink: "url_link", apiScheme: "openlink", apiShortLink: "link"}

// serveLink answers with the link of cr, made once for every visitor:
// a redirect, WeChat's JSON or a page, none kept longer than the link
// is served.
func (h *Handler) serveLink(w http.ResponseWriter, r *http.Request, cr *codeRequest) error {
	e, outcome, err := h.lookup(r.Context(), cr)
	if err != nil && r.Context().Err() != nil {
		h.logger.Debug("client went away", zap.String("key", cr.key))
		return nil
	}
	if err != nil {
		return h.fail(w, cr, err)
	}
	hdr := w.Header()
	hdr["Cache-Status"] = cacheStatus[outcome]
	link, scope := e.content, h.cacheScope
	if cr.wxaLink.cq != "" {
		// One visitor's link: no shared cache may serve it to another.
		link, scope = withCQ(link, cr.wxaLink.cq), "private"
	}
	if !e.renewAt.IsZero() || cr.wxaLink.cq != "" {
		// A site's own Cache-Control, right for codes that never change,
		// would keep a link past its end or share a visitor's cq.
		delete(hdr, "Cache-Control")
	}
	setFreshness(hdr, e, scope, h.clock)
	status := http.StatusOK
	var body []byte
	switch h.reply {
	case replyRedirect:
		status = http.StatusFound
		hdr["Location"] = []string{link}
	case replyJSON:
		hdr["Content-Type"] = []string{"application/json; charset=utf-8"}
		body = linkJSON(cr.api, link)
	case replyPage:
		nonce := newNonce()
		hdr["Content-Type"] = []string{"text/html; charset=utf-8"}
		hdr["Content-Security-Policy"] = []string{"default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce + "'; base-uri 'none'; form-action 'none'"}
		if body, err = linkPage(link, nonce); err != nil {
			return h.fail(w, cr, err)
		}
	}
	if body != nil {
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	countRequest(outcome, status)
	return nil
}

// withCQ appends cq to a URL Link.
func withCQ(link, cq string) string {
	sep := "?"
	if strings.Contains(link, "?") {
		sep = "&"
	}
	return link + sep + "cq=" + url.QueryEscape(cq)
}

// linkJSON is WeChat's own reply shape for the api's link, written as
// WeChat writes it, & and < unescaped.
func linkJSON(api, link string) []byte {
	return []byte(`{"errcode":0,"errmsg":"ok",` + strconv.Quote(linkField[api]) + `:` + jsonString(link) + `}`)
}

// jsonString writes s as a JSON string without HTML escaping.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// pageTemplate opens the link at once and offers a button to tap, for
// browsers that open weixin:// only from a tap (Android outside WeChat).
// html/template escapes the link in each context it appears in.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>打开小程序</title>
<style nonce="{{.Nonce}}">body{font-family:system-ui,sans-serif;text-align:center;padding:3em 1em}a{display:inline-block;padding:.8em 2em;border-radius:.5em;background:#07c160;color:#fff;text-decoration:none;font-size:1.2em}</style>
</head>
<body>
<p>正在打开小程序… Opening the mini-program…</p>
<p><a id="open" href="{{.Link}}">打开小程序 Open</a></p>
<script nonce="{{.Nonce}}">location.href = {{.Link}};</script>
</body>
</html>
`))

// linkPage renders the page of link. WeChat's links are https:// or
// weixin:// (the client checks), so the link is marked a URL to keep
// html/template from refusing the weixin scheme; it is still escaped.
func linkPage(link, nonce string) ([]byte, error) {
	var b strings.Builder
	err := pageTemplate.Execute(&b, struct {
		Link  template.URL
		Nonce string
	}{template.URL(link), nonce})
	return []byte(b.String()), err
}

func newNonce() string {
	var b [16]byte
	// crypto/rand.Read never fails.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// linkCapGroup is the count a link route's caps share: URL Links and
// Schemes spend one daily budget, permanent short links a lifetime one.
func (h *Handler) linkCapGroup() string {
	switch {
	case h.api == apiShortLink && h.Permanent:
		return caps.GroupPermanentShortLink
	case h.api == apiShortLink:
		return caps.GroupShortLink
	}
	return caps.GroupLinks
}

// linkGuard refuses a link route whose requests choose among unboundedly
// many links without sign_key or a cap: URL Links and Schemes spend a
// daily budget of 500,000, so any cap without by bounds them; permanent
// short links spend 100,000 for ever, so only a total does.
func (h *Handler) linkGuard(api string) error {
	why, option, index := h.linkFree()
	if why == "" {
		return nil
	}
	const signHint = "'sign_key {env.WXQRCODE_SIGN_KEY}'"
	var msg string
	if api == apiShortLink && h.Permanent {
		for _, c := range h.Caps {
			if c.Per == 0 && c.By == "" {
				return nil
			}
		}
		msg = fmt.Sprintf("api shortlink with permanent true spends WeChat's lifetime budget of 100,000 permanent links per app and requests choose %s: "+
			"add a total such as 'cap 20000', or %s; a cap per window bounds a rate, not the budget", why, signHint)
	} else {
		for _, c := range h.Caps {
			if c.By == "" {
				return nil
			}
		}
		msg = fmt.Sprintf("api %s spends WeChat's daily budget of links per app and requests choose %s: "+
			"add a cap such as 'cap 10000 per 1d', or %s; a cap per visitor (by) does not bound what all visitors together make", api, why, signHint)
	}
	if option == "" {
		return errors.New(msg)
	}
	return &optionError{option, index, errors.New(msg)}
}

// linkFree names how requests choose the link, and the option at fault,
// or returns "" when the config pins it: allow matches path?query, so
// literal globs pin both, but not a title read from the request.
func (h *Handler) linkFree() (why, option string, index int) {
	if readsRequest(h.Title) {
		return fmt.Sprintf("the title (title %s reads the request)", h.Title), "title", 0
	}
	path, query := h.Path, h.Query
	if path == "" {
		path = defaultPath
	}
	if query == "" {
		query = defaultLinkQuery
	}
	if !readsRequest(path) && !readsRequest(query) {
		return "", "", 0
	}
	if len(h.Allow) == 0 {
		opt, tmpl, set := "path", path, h.Path
		if !readsRequest(path) {
			opt, tmpl, set = "query", query, h.Query
		}
		written := opt + " " + tmpl
		if set == "" {
			written = "the default, " + written + ","
		}
		return fmt.Sprintf("the page (%s reads the request, and no allow list pins it)", written), setOption(opt, set), 0
	}
	for i, g := range h.Allow {
		if strings.Contains(g, "*") {
			return fmt.Sprintf("the page (allow %s has a *)", g), "allow", i
		}
	}
	return "", "", 0
}
