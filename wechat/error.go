package wechat

import (
	"errors"
	"fmt"
)

// Error is an error reply from WeChat (errcode != 0), or an input that
// WeChat would reject, found before any call was made.
type Error struct {
	// Code is WeChat's errcode.
	Code int
	// Message is WeChat's errmsg.
	Message string
	// Body is the reply exactly as WeChat sent it; nil when the error was
	// found locally.
	Body []byte
}

func (e *Error) Error() string {
	return fmt.Sprintf("wechat: errcode %d: %s", e.Code, e.Message)
}

// Error codes this package acts on or produces. WeChat has many more; an
// Error carries whatever code WeChat sent.
const (
	CodeBusy              = -1
	CodeInvalidCredential = 40001
	CodeInvalidAppID      = 40013
	CodeInvalidToken      = 40014
	CodeInvalidActionName = 40052
	CodeInvalidActionInfo = 40053
	CodeInvalidArgs       = 40097
	CodeInvalidSecret     = 40125
	CodeSceneChars        = 40129
	CodeInvalidPagePath   = 40165
	CodePathLength        = 40159
	CodeIPNotAllowed      = 40164
	CodeSceneLength       = 40169
	CodeSecretFrozen      = 40243
	CodeTokenMissing      = 41001
	CodeInvalidPage       = 41030
	CodeTokenExpired      = 42001
	CodeTooFrequent       = 44990
	CodeDailyLimit        = 45009
	CodeMinuteLimit       = 45011
	CodeLifetimeLimit     = 45029
	CodeBadBody           = 47001
	CodeUnauthorized      = 48001
	CodeScancodeTime      = 85096
	CodeInvalidQuery      = 40212
	CodeInvalidEnvVersion = 85402
	CodeNotPublished      = 85079
	CodeLinkDailyLimit    = 44993
)

// IsTokenError reports whether code says the access token used is no longer
// good, so that a fresh token may succeed.
func IsTokenError(code int) bool {
	return code == CodeInvalidCredential || code == CodeInvalidToken || code == CodeTokenExpired
}

// ErrBadReply is returned for a reply that is neither a whole image nor a
// WeChat error.
var ErrBadReply = errors.New("wechat: reply is neither a whole image nor an error")

// ErrReplyTooLarge is returned for a reply longer than Client.MaxReplySize.
var ErrReplyTooLarge = errors.New("wechat: reply too large")

// TokenError is a failure to get an access token from a token endpoint:
// Err is the cause, an *Error for WeChat's refusals. It concerns the
// server, not the request that needed the token: WeChat's message may
// name the server's IP address (40164), so show it to operators only.
type TokenError struct {
	Err error
}

func (e *TokenError) Error() string { return "wechat: getting an access token: " + e.Err.Error() }

func (e *TokenError) Unwrap() error { return e.Err }

// StatusError is returned when WeChat (or a proxy in front of it) answers
// with an HTTP status other than 200 and no WeChat error body.
type StatusError struct {
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("wechat: unexpected HTTP status %d", e.StatusCode)
}

// localError builds an Error for input that WeChat would reject.
func localError(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
