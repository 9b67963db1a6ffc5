package wechattest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
)

// contentTypeJSON is what WeChat labels its JSON answers with.
const contentTypeJSON = "application/json; encoding=utf-8"

// errMessages are the default errmsg texts, close to WeChat's own.
var errMessages = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40002: "invalid grant_type",
	40013: "invalid appid",
	40014: "invalid access_token",
	40097: "invalid args",
	40125: "invalid appsecret",
	40129: "invalid scene",
	40159: "invalid length for path, or the data is not json string",
	40164: "invalid ip, not in whitelist",
	40165: "invalid weapp pagepath",
	40169: "invalid length for scene, or the data is not json string",
	40243: "AppSecret已被冻结",
	41001: "access_token missing",
	41030: "invalid page",
	42001: "access_token expired",
	43001: "require GET method",
	43002: "require POST method",
	40212: "invalid query",
	44990: "reach max api minute qps limit",
	44993: "reach max api daily quota limit of url scheme and url link",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit",
	45029: "qrcode count out of limit",
	47001: "data format error",
	48001: "api unauthorized",
	85079: "miniprogram has no online release",
	85096: "scancode_time not allowed",
	85402: "invalid env_version",
}

// errReply is WeChat's error answer: HTTP 200 with errcode and errmsg, the
// errmsg ending in a request id as real ones do. An empty msg means the
// default text for code.
func errReply(code int, msg string) reply {
	if msg == "" {
		msg = errMessages[code]
		if msg == "" {
			msg = "unknown error"
		}
	}
	if !strings.Contains(msg, " rid: ") {
		msg += " rid: " + newRID()
	}
	return jsonReply(struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}{code, msg})
}

func newRID() string {
	return fmt.Sprintf("%08x-%08x-%08x", rand.Uint32(), rand.Uint32(), rand.Uint32())
}

func jsonReply(v any) reply {
	// Only plain structs of strings, numbers and bools are passed, which
	// always marshal.
	b, _ := json.Marshal(v)
	return reply{
		status: http.StatusOK,
		header: http.Header{"Content-Type": {contentTypeJSON}},
		body:   b,
	}
}

// decode parses the request body as JSON into v, reporting false for
// anything WeChat would call a data format error. String values are read
// as WeChat reads them: as written (see asWritten).
func (in inbound) decode(v any) bool {
	return in.bodyOK && json.Unmarshal(asWritten(in.body), v) == nil
}

// asWritten keeps the escapes \u0026, \u003c and \u003e (what Go's
// json.Marshal writes for &, < and >) as the six characters they are
// written with, as WeChat does: it refuses them in a scene (40129) and
// keeps them in a path, so a code holds "id=1\u0026from=poster". Other
// SDKs' users met exactly this; the fake reproduces it so that a client
// which escapes fails its tests.
func asWritten(body []byte) []byte {
	var out []byte
	last := 0
	for i := 0; i+1 < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if body[i+1] == 'u' && i+6 <= len(body) && htmlEscape(string(body[i+2:i+6])) {
			out = append(out, body[last:i]...)
			out = append(out, '\\')
			last = i
		}
		i++ // the escaped byte, a backslash among them, is not an escape
	}
	if out == nil {
		return body
	}
	return append(out, body[last:]...)
}

// htmlEscape reports whether hex is the code of &, < or >.
func htmlEscape(hex string) bool {
	switch strings.ToLower(hex) {
	case "0026", "003c", "003e":
		return true
	}
	return false
}
