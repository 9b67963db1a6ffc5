package wechat

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// The link APIs: a URL Link (https://wxaurl.cn/...), a URL Scheme
// (weixin://dl/business/?t=...) and a Short Link (#小程序://...), each
// opening a mini-program page from outside a code.
const (
	pathURLLink   = "/wxa/generate_urllink"
	pathScheme    = "/wxa/generatescheme"
	pathShortLink = "/wxa/genwxashortlink"
)

// Limits of the link APIs.
const (
	// MaxLinkQueryLen bounds a link's query, in characters.
	MaxLinkQueryLen = 1024
	// MaxLinkPathLen bounds a link's page path.
	MaxLinkPathLen = 1024
	// MinLinkExpire and MaxLinkExpire bound the life of a URL Link or URL
	// Scheme; 30 days is also the life of a short link that is not
	// permanent.
	MinLinkExpire = 60 * time.Second
	MaxLinkExpire = 30 * 24 * time.Hour
)

// linkQueryChars is the alphabet WeChat takes in a link's query.
const linkQueryChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$&'()*+,/:;=?@-._~%"

// LinkTarget is the page a URL Link or URL Scheme opens.
type LinkTarget struct {
	// Path is a published page, with no leading slash and no query;
	// empty means the home page.
	Path string
	// Query is the page's query, at most 1,024 characters of
	// [0-9A-Za-z!#$&'()*+,/:;=?@-._~%].
	Query string
	// EnvVersion is release, trial or develop; empty means release.
	EnvVersion string
	// Expire is the link's life, 60s..30 days in whole seconds; 0 means
	// 30 days. Whole days are sent as an interval, anything else as a
	// time, so WeChat's own default (a link that never expires, which
	// WeChat no longer issues) never applies.
	Expire time.Duration
}

// URLLinkRequest asks generate_urllink for a URL Link.
type URLLinkRequest struct{ LinkTarget }

// SchemeRequest asks generatescheme for a URL Scheme.
type SchemeRequest struct{ LinkTarget }

// ShortLinkRequest asks genwxashortlink for a Short Link, which is pasted
// inside WeChat only.
type ShortLinkRequest struct {
	// PageURL is the page with its query, e.g. pages/item/item?id=42,
	// with no leading slash.
	PageURL string
	// Title is the page title WeChat shows with the link.
	Title string
	// Permanent asks for a link that never expires (100,000 per app, for
	// ever); otherwise it lives 30 days.
	Permanent bool
}

// Validate reports an input WeChat rejects, so that a bad request spends
// no call.
func (t *LinkTarget) Validate() error {
	if err := validLinkPath(t.Path, false); err != nil {
		return err
	}
	if err := validLinkQuery(t.Query); err != nil {
		return err
	}
	switch t.EnvVersion {
	case "", EnvRelease, EnvTrial, EnvDevelop:
	default:
		return localError(CodeInvalidEnvVersion, "env_version must be release, trial or develop")
	}
	if t.Expire != 0 && (t.Expire < MinLinkExpire || t.Expire > MaxLinkExpire || t.Expire%time.Second != 0) {
		return localError(CodeInvalidArgs, "expire must be whole seconds from %s to %s, got %s", MinLinkExpire, MaxLinkExpire, t.Expire)
	}
	return nil
}

// Validate reports an input WeChat rejects.
func (r *ShortLinkRequest) Validate() error {
	path, query, _ := strings.Cut(r.PageURL, "?")
	if err := validLinkPath(path, true); err != nil {
		return err
	}
	if err := validLinkQuery(query); err != nil {
		return err
	}
	if !validText(r.Title) {
		return localError(CodeInvalidArgs, "page_title must be printable UTF-8")
	}
	return nil
}

func validLinkPath(path string, required bool) error {
	switch {
	case path == "" && required:
		return localError(CodeInvalidPagePath, "the page is required")
	case strings.HasPrefix(path, "/"):
		return localError(CodeInvalidPagePath, "the page must not start with /")
	case strings.Contains(path, "?"):
		return localError(CodeInvalidPagePath, "the page must not carry a query: give it as query")
	case len(path) > MaxLinkPathLen || !validText(path):
		return localError(CodeInvalidPagePath, "the page must be at most %d bytes of printable UTF-8", MaxLinkPathLen)
	}
	return nil
}

func validLinkQuery(q string) error {
	if len(q) > MaxLinkQueryLen {
		return localError(CodeInvalidQuery, "query must be at most %d characters", MaxLinkQueryLen)
	}
	if strings.Trim(q, linkQueryChars) != "" {
		return localError(CodeInvalidQuery, "query may hold only letters, digits and !#$&'()*+,/:;=?@-._~%%")
	}
	return nil
}

func (t *LinkTarget) expire() time.Duration {
	if t.Expire == 0 {
		return MaxLinkExpire
	}
	return t.Expire
}

// linkExpiry is the expiry fields both expiring APIs take.
type linkExpiry struct {
	ExpireType     int   `json:"expire_type"`
	ExpireTime     int64 `json:"expire_time,omitempty"`
	ExpireInterval int64 `json:"expire_interval,omitempty"`
}

// expiry asks for whole days as an interval, which WeChat counts from its
// own clock, and any other life as a time from this one.
func (t *LinkTarget) expiry(now time.Time) linkExpiry {
	d := t.expire()
	if d%(24*time.Hour) == 0 {
		return linkExpiry{ExpireType: 1, ExpireInterval: int64(d / (24 * time.Hour))}
	}
	return linkExpiry{ExpireType: 0, ExpireTime: now.Add(d).Unix()}
}

// MarshalJSON writes the body generate_urllink takes.
func (r *URLLinkRequest) MarshalJSON() ([]byte, error) {
	return marshalBody(struct {
		Path       string `json:"path"`
		Query      string `json:"query"`
		EnvVersion string `json:"env_version,omitempty"`
		linkExpiry
	}{r.Path, r.Query, r.EnvVersion, r.expiry(time.Now())})
}

// MarshalJSON writes the body generatescheme takes.
func (r *SchemeRequest) MarshalJSON() ([]byte, error) {
	type jumpWxa struct {
		Path       string `json:"path"`
		Query      string `json:"query"`
		EnvVersion string `json:"env_version,omitempty"`
	}
	return marshalBody(struct {
		JumpWxa  jumpWxa `json:"jump_wxa"`
		IsExpire bool    `json:"is_expire"`
		linkExpiry
	}{jumpWxa{r.Path, r.Query, r.EnvVersion}, true, r.expiry(time.Now())})
}

// MarshalJSON writes the body genwxashortlink takes.
func (r *ShortLinkRequest) MarshalJSON() ([]byte, error) {
	return marshalBody(struct {
		PageURL     string `json:"page_url"`
		PageTitle   string `json:"page_title"`
		IsPermanent bool   `json:"is_permanent"`
	}{r.PageURL, r.Title, r.Permanent})
}

// Link is a link WeChat generated.
type Link struct {
	// URL is the link: https://wxaurl.cn/... (URL Link),
	// weixin://dl/business/?t=... (URL Scheme) or #小程序://... (Short Link).
	URL string
	// Expiry is when the link stops working, counted from before the
	// call, so never late; zero for a permanent short link.
	Expiry time.Time
}

// GenerateURLLink calls generate_urllink, with the same token, retry and
// refusal rules as the code APIs.
func (c *Client) GenerateURLLink(ctx context.Context, req *URLLinkRequest) (*Link, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return c.callLink(ctx, OpURLLink, pathURLLink, req, "url_link", "https://", req.expire())
}

// GenerateScheme calls generatescheme.
func (c *Client) GenerateScheme(ctx context.Context, req *SchemeRequest) (*Link, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return c.callLink(ctx, OpScheme, pathScheme, req, "openlink", "weixin://", req.expire())
}

// GenerateShortLink calls genwxashortlink.
func (c *Client) GenerateShortLink(ctx context.Context, req *ShortLinkRequest) (*Link, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	life := MaxLinkExpire
	if req.Permanent {
		life = 0
	}
	return c.callLink(ctx, OpShortLink, pathShortLink, req, "link", "#小程序://", life)
}

// callLink makes a link call whose reply holds the link in field, which
// must start with prefix: anything else is not a link WeChat issues, and
// the module writes it into a Location header and a page.
func (c *Client) callLink(ctx context.Context, op, path string, req any, field, prefix string, life time.Duration) (*Link, error) {
	start := time.Now()
	var link string
	err := c.call(ctx, op, path, req, func(data []byte, _ http.Header) error {
		var err error
		link, err = parseLinkReply(data, field, prefix)
		return err
	})
	if err != nil {
		return nil, err
	}
	l := &Link{URL: link}
	if life > 0 {
		l.Expiry = start.Add(life)
	}
	return l, nil
}

// maxLinkLen bounds a link WeChat sends back.
const maxLinkLen = 2048

// parseLinkReply reads a link API's JSON: the link, or WeChat's error.
func parseLinkReply(data []byte, field, prefix string) (string, error) {
	if werr := parseError(data); werr != nil {
		return "", werr
	}
	var reply map[string]json.RawMessage
	var link string
	if json.Unmarshal(data, &reply) != nil || json.Unmarshal(reply[field], &link) != nil {
		return "", ErrBadReply
	}
	if !strings.HasPrefix(link, prefix) || len(link) > maxLinkLen || !validText(link) ||
		strings.ContainsAny(link, " \"<>\\") {
		return "", ErrBadReply
	}
	return link, nil
}
