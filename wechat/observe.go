package wechat

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"
)

// Names of the operations an Observer is told of.
const (
	OpStableToken = "stable_token"
	OpToken       = "token"
	OpQRCode      = "createQRCode"
	OpWxaCode     = "getwxacode"
	OpUnlimited   = "getUnlimited"
	// OpCentralToken is a request to a URLTokenSource's token server.
	OpCentralToken = "central_token"
	// OpOACode is a call to the official account's qrcode.create.
	OpOACode = "qrcode_create"
	// OpURLLink, OpScheme and OpShortLink are calls to the link APIs.
	OpURLLink   = "generate_urllink"
	OpScheme    = "generatescheme"
	OpShortLink = "genwxashortlink"
)

// An Observer is told of every HTTP exchange with WeChat, for metrics. Its
// method must be fast and safe for concurrent use.
type Observer interface {
	// Exchange reports one exchange: the operation (Op...), its outcome
	// (see Outcome) and how long it took.
	Exchange(op, outcome string, d time.Duration)
}

// Outcome names the result of an exchange for metrics: "ok", WeChat's
// errcode, "timeout", "network", "http_<status>", "bad_reply" or
// "too_large".
func Outcome(err error) string {
	var werr *Error
	var serr *StatusError
	var nerr net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &werr):
		return strconv.Itoa(werr.Code)
	case errors.As(err, &serr):
		return "http_" + strconv.Itoa(serr.StatusCode)
	case errors.Is(err, ErrBadReply):
		return "bad_reply"
	case errors.Is(err, ErrReplyTooLarge):
		return "too_large"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	}
	return "network"
}

func observe(o Observer, op string, start time.Time, err error) {
	if o != nil {
		o.Exchange(op, Outcome(err), time.Since(start))
	}
}
