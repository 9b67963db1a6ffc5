package wechat

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
	"unicode/utf8"
)

const pathOACode = "/cgi-bin/qrcode/create"

// Limits of the official account's parametric codes.
const (
	MaxOASceneLen = 64
	MinOAExpire   = 60 * time.Second
	MaxOAExpire   = 2592000 * time.Second // 30 days
	OATemporary   = "QR_STR_SCENE"
	OAPermanent   = "QR_LIMIT_STR_SCENE"
)

// OACodeRequest asks an official account's qrcode.create for a parametric
// code carrying a string scene. The code's content is the reply's URL;
// render the image from it.
type OACodeRequest struct {
	// Scene is the scene_str, 1..64 characters of printable UTF-8.
	Scene string
	// Permanent asks for a permanent code (QR_LIMIT_STR_SCENE), of which
	// an account has 100,000 for ever; otherwise the code is temporary
	// (QR_STR_SCENE).
	Permanent bool
	// Expire is a temporary code's life, 60s..30 days, in whole seconds;
	// 0 means 30 days. It is always sent, so WeChat's own default of 60
	// seconds never applies. A permanent code takes none.
	Expire time.Duration
}

// Validate reports an input WeChat rejects, so that a bad request spends
// no call.
func (r *OACodeRequest) Validate() error {
	if n := utf8.RuneCountInString(r.Scene); n < 1 || n > MaxOASceneLen || !validText(r.Scene) {
		return localError(CodeInvalidActionInfo, "scene must be 1 to %d characters of printable UTF-8", MaxOASceneLen)
	}
	if r.Permanent {
		if r.Expire != 0 {
			return localError(CodeInvalidArgs, "a permanent code takes no expire")
		}
		return nil
	}
	if r.Expire != 0 && (r.Expire < MinOAExpire || r.Expire > MaxOAExpire || r.Expire%time.Second != 0) {
		return localError(CodeInvalidArgs, "expire must be whole seconds from %s to %s, got %s", MinOAExpire, MaxOAExpire, r.Expire)
	}
	return nil
}

// MarshalJSON writes the body qrcode.create takes.
func (r *OACodeRequest) MarshalJSON() ([]byte, error) {
	type scene struct {
		SceneStr string `json:"scene_str"`
	}
	type actionInfo struct {
		Scene scene `json:"scene"`
	}
	body := struct {
		ExpireSeconds int64      `json:"expire_seconds,omitempty"`
		ActionName    string     `json:"action_name"`
		ActionInfo    actionInfo `json:"action_info"`
	}{ActionName: OAPermanent, ActionInfo: actionInfo{scene{r.Scene}}}
	if !r.Permanent {
		body.ActionName = OATemporary
		body.ExpireSeconds = int64(r.expire() / time.Second)
	}
	return marshalBody(body)
}

func (r *OACodeRequest) expire() time.Duration {
	if r.Expire == 0 {
		return MaxOAExpire
	}
	return r.Expire
}

// OACode is qrcode.create's reply.
type OACode struct {
	// Ticket exchanges for WeChat's own image of the code at
	// mp.weixin.qq.com/cgi-bin/showqrcode.
	Ticket string `json:"ticket"`
	// URL is the code's content, e.g. http://weixin.qq.com/q/02…: encode
	// it as a QR code to draw the code.
	URL string `json:"url"`
	// ExpireSeconds is a temporary code's life as WeChat granted it; 0 for
	// a permanent code.
	ExpireSeconds int64 `json:"expire_seconds"`
	// Expiry is when a temporary code stops working, counted from before
	// the call, so never late; zero for a permanent code.
	Expiry time.Time `json:"-"`
}

// CreateOACode calls the official account's qrcode.create, with the same
// token, retry and refusal rules as the code APIs.
func (c *Client) CreateOACode(ctx context.Context, req *OACodeRequest) (*OACode, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	var code *OACode
	err := c.call(ctx, OpOACode, pathOACode, req, func(data []byte, _ http.Header) error {
		got, err := parseOAReply(data, req.Permanent)
		code = got
		return err
	})
	if err != nil {
		return nil, err
	}
	if !req.Permanent {
		code.Expiry = start.Add(time.Duration(code.ExpireSeconds) * time.Second)
	}
	return code, nil
}

// parseOAReply reads qrcode.create's JSON: a code, or WeChat's error.
func parseOAReply(data []byte, permanent bool) (*OACode, error) {
	if werr := parseError(data); werr != nil {
		return nil, werr
	}
	var code OACode
	if json.Unmarshal(data, &code) != nil || code.Ticket == "" || code.URL == "" {
		return nil, ErrBadReply
	}
	switch {
	case permanent:
		code.ExpireSeconds = 0
	case code.ExpireSeconds <= 0:
		// A temporary code whose life is unknown cannot be kept.
		return nil, ErrBadReply
	}
	// WeChat grants 30 days at most; a wilder figure must not be trusted.
	code.ExpireSeconds = min(code.ExpireSeconds, int64(MaxOAExpire/time.Second))
	return &code, nil
}
