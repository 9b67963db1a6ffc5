package wechattest

import (
	"crypto/rand"
	"encoding/base64"
	"time"
	"unicode/utf8"
)

// PathOACode is the official account's qrcode.create.
const PathOACode = "/cgi-bin/qrcode/create"

const (
	defaultPermanentLimit = 100000
	// maxOAExpire is what WeChat clamps a temporary code's life to, and
	// defaultOAExpire what it gives when none is asked.
	maxOAExpire     = 2592000
	defaultOAExpire = 60
)

type oaRequest struct {
	ExpireSeconds int64  `json:"expire_seconds"`
	ActionName    string `json:"action_name"`
	ActionInfo    struct {
		Scene struct {
			SceneStr string `json:"scene_str"`
		} `json:"scene"`
	} `json:"action_info"`
}

// oaKey names a code: its scene and whether it is permanent.
type oaKey struct {
	scene     string
	permanent bool
}

// oaCode is an issued parametric code.
type oaCode struct {
	ticket, url string
	expires     time.Time // zero for a permanent code
}

func (c *oaCode) live(now time.Time) bool {
	return c.expires.IsZero() || now.Before(c.expires)
}

// SetPermanentLimit sets how many distinct permanent codes qrcode.create
// issues before it refuses new ones with 45029 (default 100000).
func (s *Server) SetPermanentLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.permanentLimit = n
}

// OAURL returns the url of the live code issued for scene, permanent or
// temporary, or "" when there is none.
func (s *Server) OAURL(scene string, permanent bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.oaCodes[oaKey{scene, permanent}]
	if c == nil || !c.live(time.Now()) {
		return ""
	}
	return c.url
}

// PermanentCodes reports the distinct permanent codes issued so far.
func (s *Server) PermanentCodes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.permanentCount
}

// serveOACode answers qrcode.create for string scenes. A code asked for
// again while it lives keeps its ticket and url; a temporary one lives on
// to the later of its two expiries. The numeric kinds (QR_SCENE,
// QR_LIMIT_SCENE) are not served and answer 40052. WeChat documents no
// errcode for the permanent limit; the fake answers 45029, as the
// mini-program APIs do for theirs.
func (s *Server) serveOACode(in inbound) reply {
	var req oaRequest
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	key := oaKey{scene: req.ActionInfo.Scene.SceneStr}
	switch req.ActionName {
	case "QR_STR_SCENE":
	case "QR_LIMIT_STR_SCENE":
		key.permanent = true
	default:
		return errReply(40052, "")
	}
	if n := utf8.RuneCountInString(key.scene); n < 1 || n > 64 {
		return errReply(40053, "")
	}
	expire := req.ExpireSeconds
	if expire <= 0 {
		expire = defaultOAExpire
	}
	expire = min(expire, maxOAExpire)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	c := s.oaCodes[key]
	if c == nil || !c.live(now) {
		if key.permanent {
			if s.permanentCount >= s.permanentLimit {
				return errReply(45029, "")
			}
			s.permanentCount++
		}
		c = newOACode()
		s.oaCodes[key] = c
	}
	if key.permanent {
		return jsonReply(struct {
			Ticket string `json:"ticket"`
			URL    string `json:"url"`
		}{c.ticket, c.url})
	}
	if until := now.Add(time.Duration(expire) * time.Second); until.After(c.expires) {
		c.expires = until
	}
	return jsonReply(struct {
		Ticket        string `json:"ticket"`
		ExpireSeconds int64  `json:"expire_seconds"`
		URL           string `json:"url"`
	}{c.ticket, expire, c.url})
}

// newOACode mints a ticket and url shaped like WeChat's: the url's id is 22
// characters starting with 02, the ticket base64 of opaque bytes and the
// url.
func newOACode() *oaCode {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	raw := make([]byte, 36)
	// crypto/rand.Read never fails.
	_, _ = rand.Read(raw)
	id := []byte("02")
	for _, b := range raw[:20] {
		id = append(id, alphabet[int(b)%len(alphabet)])
	}
	u := "http://weixin.qq.com/q/" + string(id)
	ticket := base64.StdEncoding.EncodeToString(append(raw[20:], u...))
	return &oaCode{ticket: ticket, url: u}
}
