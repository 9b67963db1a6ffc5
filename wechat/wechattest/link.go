package wechattest

import (
	"math/rand/v2"
	"strings"
	"time"
)

// The link APIs' paths.
const (
	PathURLLink   = "/wxa/generate_urllink"
	PathScheme    = "/wxa/generatescheme"
	PathShortLink = "/wxa/genwxashortlink"
)

const (
	maxLinkQuery = 1024
	maxLinkDays  = 30
	// linkQueryChars is what WeChat takes in a link's query: a \u0026
	// written by an escaping encoder is read as written, and refused.
	linkQueryChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$&'()*+,/:;=?@-._~%"
)

type linkTarget struct {
	Path       string `json:"path"`
	Query      string `json:"query"`
	EnvVersion string `json:"env_version"`
}

type linkExpiry struct {
	IsExpire       bool  `json:"is_expire"`
	ExpireType     int   `json:"expire_type"`
	ExpireTime     int64 `json:"expire_time"`
	ExpireInterval int64 `json:"expire_interval"`
}

// LinkCalls reports the requests received at the three link paths.
func (s *Server) LinkCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[PathURLLink] + s.calls[PathScheme] + s.calls[PathShortLink]
}

// serveURLLink answers generate_urllink with a new link on every call, as
// WeChat does.
func (s *Server) serveURLLink(in inbound) reply {
	var req struct {
		linkTarget
		linkExpiry
	}
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	if code := s.checkLink(req.linkTarget, req.linkExpiry, false); code != 0 {
		return errReply(code, "")
	}
	return jsonReply(struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
		URLLink string `json:"url_link"`
	}{0, "ok", "https://wxaurl.cn/" + linkID(12)})
}

// serveScheme answers generatescheme.
func (s *Server) serveScheme(in inbound) reply {
	var req struct {
		JumpWxa linkTarget `json:"jump_wxa"`
		linkExpiry
	}
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	if code := s.checkLink(req.JumpWxa, req.linkExpiry, true); code != 0 {
		return errReply(code, "")
	}
	return jsonReply(struct {
		ErrCode  int    `json:"errcode"`
		ErrMsg   string `json:"errmsg"`
		OpenLink string `json:"openlink"`
	}{0, "ok", "weixin://dl/business/?t=" + linkID(13)})
}

// serveShortLink answers genwxashortlink: the page with its query, a
// title and whether the link is permanent.
func (s *Server) serveShortLink(in inbound) reply {
	var req struct {
		PageURL     string `json:"page_url"`
		PageTitle   string `json:"page_title"`
		IsPermanent bool   `json:"is_permanent"`
	}
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	path, query, _ := strings.Cut(req.PageURL, "?")
	if !s.published(path) {
		return errReply(40165, "")
	}
	if len(query) > maxLinkQuery || strings.Trim(query, linkQueryChars) != "" {
		return errReply(40212, "")
	}
	return jsonReply(struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
		Link    string `json:"link"`
	}{0, "ok", "#小程序://示例小程序/" + linkID(7)})
}

// checkLink returns WeChat's errcode for a bad target or expiry, or 0. An
// empty path is the home page. A scheme needs is_expire for an expiry to
// apply.
func (s *Server) checkLink(t linkTarget, e linkExpiry, scheme bool) int {
	if t.Path != "" && !s.published(t.Path) {
		return 40165
	}
	if len(t.Query) > maxLinkQuery || strings.Trim(t.Query, linkQueryChars) != "" {
		return 40212
	}
	switch t.EnvVersion {
	case "", "release", "trial", "develop":
	default:
		return 85402
	}
	if scheme && !e.IsExpire {
		return 0
	}
	switch e.ExpireType {
	case 0:
		if left := time.Until(time.Unix(e.ExpireTime, 0)); left <= 0 || left > maxLinkDays*24*time.Hour {
			return 40097
		}
	case 1:
		if e.ExpireInterval < 1 || e.ExpireInterval > maxLinkDays {
			return 40097
		}
	default:
		return 40097
	}
	return 0
}

// linkID is n random letters and digits.
func linkID(n int) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}
