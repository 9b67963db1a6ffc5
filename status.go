package wxqrcode

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// The module's own error codes, for failures WeChat has no code for. They
// are documented in the README.
const (
	codeSigMissing      = 990411 // sign_key is set and the request has no sig
	codeSigInvalid      = 990412 // sig is not the request's signature
	codeBudgetSpent     = 990421 // a total cap is spent
	codeRateCapped      = 990429 // a cap per window is reached
	codeNotAllowed      = 990403 // the path or page matches no allow glob
	codeMethod          = 990405 // not GET or HEAD
	codeInternal        = 990500 // the module could not do its work
	codeBusy            = 990503 // too many new codes are being fetched at once
	codeUpstreamFailed  = 990502 // WeChat unreachable or its reply unusable
	codeUpstreamTimeout = 990504 // WeChat did not answer within timeout
)

// problem is an error response: its status, body and Retry-After.
type problem struct {
	status     int
	body       []byte
	retryAfter time.Duration
	// code and message are for the logs.
	code    int
	message string
}

func (p *problem) Error() string { return p.message }

func localProblem(status, code int, message string) *problem {
	body, _ := json.Marshal(struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}{code, message})
	return &problem{status: status, body: body, code: code, message: message}
}

// busyProblem answers a request that found every slot for a call to
// WeChat taken for its whole timeout.
func busyProblem() *problem {
	p := localProblem(http.StatusServiceUnavailable, codeBusy, "wxqrcode: too many new codes are being made at once; try again shortly")
	p.retryAfter = 5 * time.Second
	return p
}

// problemFor maps an error from resolving or fetching a code to the status
// table of the README. WeChat's own errors keep WeChat's body.
func problemFor(err error) *problem {
	var werr *wechat.Error
	var terr *wechat.TokenError
	if errors.As(err, &terr) {
		// The detail, which may name the server's IP or the token
		// server's address, goes to the log only.
		code := codeUpstreamFailed
		if errors.As(err, &werr) {
			code = werr.Code
		}
		return localProblem(http.StatusBadGateway, code, "wxqrcode: the server could not get an access token; its log says why")
	}
	if errors.As(err, &werr) {
		p := localProblem(wechatStatus(werr.Code), werr.Code, werr.Message)
		if werr.Body != nil {
			p.body = werr.Body
		}
		switch werr.Code {
		case wechat.CodeDailyLimit, wechat.CodeLinkDailyLimit:
			p.retryAfter = untilBeijingMidnight(time.Now())
		case wechat.CodeMinuteLimit, wechat.CodeTooFrequent:
			// 44990 is WeChat's 5,000 calls a minute, 45011 a minute's
			// limit of its own: both pass within the minute.
			p.retryAfter = time.Minute
		case wechat.CodeBusy:
			p.retryAfter = 5 * time.Second
		}
		return p
	}
	var spent *caps.SpentError
	if errors.As(err, &spent) {
		return localProblem(http.StatusForbidden, codeBudgetSpent, "wxqrcode: "+spent.Error())
	}
	var full *caps.FullError
	if errors.As(err, &full) {
		p := localProblem(http.StatusTooManyRequests, codeRateCapped, "wxqrcode: "+full.Error())
		p.retryAfter = full.RetryAfter
		return p
	}
	if errors.Is(err, caps.ErrUnavailable) {
		p := localProblem(http.StatusServiceUnavailable, codeInternal, "wxqrcode: the caps on new codes cannot be checked now")
		p.retryAfter = 30 * time.Second
		return p
	}
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		return localProblem(http.StatusGatewayTimeout, codeUpstreamTimeout, "wxqrcode: wechat did not answer in time")
	}
	return localProblem(http.StatusBadGateway, codeUpstreamFailed, "wxqrcode: wechat could not be reached or sent an unusable reply")
}

// wechatStatus is the HTTP status for a WeChat errcode.
func wechatStatus(code int) int {
	switch code {
	case wechat.CodeInvalidArgs, wechat.CodePathLength, wechat.CodeSceneLength,
		wechat.CodeSceneChars, wechat.CodeInvalidPage, wechat.CodeInvalidPagePath, wechat.CodeScancodeTime,
		wechat.CodeInvalidActionName, wechat.CodeInvalidActionInfo, wechat.CodeInvalidQuery, wechat.CodeInvalidEnvVersion:
		return http.StatusBadRequest
	case wechat.CodeNotPublished:
		// Nothing the visitor can change: the app must be published.
		return http.StatusConflict
	case wechat.CodeLifetimeLimit:
		return http.StatusForbidden
	case wechat.CodeDailyLimit, wechat.CodeMinuteLimit, wechat.CodeTooFrequent, wechat.CodeLinkDailyLimit:
		return http.StatusTooManyRequests
	case wechat.CodeBusy:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// beijing is UTC+8, where WeChat's daily quotas roll over.
var beijing = time.FixedZone("CST", 8*60*60)

func untilBeijingMidnight(now time.Time) time.Duration {
	t := now.In(beijing)
	next := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, beijing)
	return next.Sub(now)
}

// setHeaders sets the headers of any answer to the problem, whoever
// writes it: none that would let a cache keep it, and Retry-After, in
// whole seconds rounded up, when the problem passes.
func (p *problem) setHeaders(hdr http.Header) {
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("ETag")
	hdr.Del("Last-Modified")
	if p.retryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
}

// write sends the problem with headers that keep it out of every cache.
func (p *problem) write(w http.ResponseWriter) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json; charset=utf-8")
	p.setHeaders(hdr)
	hdr.Set("Content-Length", strconv.Itoa(len(p.body)))
	w.WriteHeader(p.status)
	_, _ = w.Write(p.body)
}
