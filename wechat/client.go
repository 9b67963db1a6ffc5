// Package wechat is a client for WeChat's mini-program code APIs
// (wxacode.createQRCode, wxacode.get and wxacode.getUnlimited), the
// official account's parametric codes (qrcode.create) and the access token
// endpoints. Tokens come from WeChat's stable or classic endpoint, from a
// company's central token server (URLTokenSource), or not at all
// (NoToken, for WeChat Cloud Hosting). It knows nothing of Caddy and can be
// used as a plain Go library.
//
// WeChat answers failures with HTTP 200 and a JSON body, and may send a PNG
// labelled image/jpeg, so replies are told apart by their bytes. Access
// tokens travel in the URL; no error this package returns contains one.
package wechat

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DefaultBaseURL is WeChat's main API host. api2.weixin.qq.com and the
// regional sh., sz. and hk. hosts serve the same API.
const DefaultBaseURL = "https://api.weixin.qq.com"

const (
	pathStableToken = "/cgi-bin/stable_token"
	pathToken       = "/cgi-bin/token"
	pathQRCode      = "/cgi-bin/wxaapp/createwxaqrcode"
	pathWxaCode     = "/wxa/getwxacode"
	pathUnlimited   = "/wxa/getwxacodeunlimit"
)

// Defaults for a Client's zero fields.
const (
	DefaultMaxReplySize = 4 << 20
	DefaultRetries      = 2
	DefaultBackoff      = 200 * time.Millisecond
)

// Client calls the code APIs for one app.
type Client struct {
	// BaseURL is the API host; empty means DefaultBaseURL.
	BaseURL string
	// HTTPClient makes the calls; nil means a client that follows no
	// redirects. One that does would send the access token to the new host
	// in the Referer. Bound each call with the context rather than a client
	// timeout.
	HTTPClient *http.Client
	// Tokens supplies access tokens. If it is an Invalidator, a token that
	// WeChat refuses (40001, 40014, 42001) is dropped and the call retried
	// once with a fresh one. NoToken makes calls without an access token,
	// for WeChat Cloud Hosting's open API service; nil is an error.
	Tokens TokenSource
	// MaxReplySize caps a reply's bytes; 0 means DefaultMaxReplySize.
	MaxReplySize int64
	// Retries is how often a call that failed for a passing reason (WeChat
	// busy, -1; the connection failing; a 5xx from a proxy) is retried,
	// within the context's deadline; 0 means DefaultRetries, negative
	// means never.
	Retries int
	// Backoff is the first wait before a retry, doubled each time; 0 means
	// DefaultBackoff.
	Backoff time.Duration
	// Observer, if set, is told of every call to a code API.
	Observer Observer
}

// Image is a code as WeChat sent it.
type Image struct {
	Data []byte
	// ContentType is image/png or image/jpeg, from the bytes, whatever the
	// reply's header said.
	ContentType string
	// NumUsed is the reply's Num-Used header (codes used of the lifetime
	// budget), or -1 where WeChat sent none.
	NumUsed int
}

// CreateQRCode calls wxacode.createQRCode.
func (c *Client) CreateQRCode(ctx context.Context, req *QRCodeRequest) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return c.callImage(ctx, OpQRCode, pathQRCode, req)
}

// GetWxaCode calls wxacode.get.
func (c *Client) GetWxaCode(ctx context.Context, req *WxaCodeRequest) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return c.callImage(ctx, OpWxaCode, pathWxaCode, req)
}

// GetUnlimited calls wxacode.getUnlimited.
func (c *Client) GetUnlimited(ctx context.Context, req *UnlimitedRequest) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return c.callImage(ctx, OpUnlimited, pathUnlimited, req)
}

// callImage makes a call whose reply is an image.
func (c *Client) callImage(ctx context.Context, op, path string, req any) (*Image, error) {
	var img *Image
	err := c.call(ctx, op, path, req, func(data []byte, header http.Header) error {
		got, err := parseCodeReply(data)
		if err != nil {
			return err
		}
		got.NumUsed = -1
		if n, err := strconv.Atoi(header.Get("Num-Used")); err == nil && n >= 0 {
			got.NumUsed = n
		}
		img = got
		return nil
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// call posts req as JSON to path and hands a 200 reply to parse, which
// returns an *Error for WeChat's error bodies. A refused token is replaced
// once and passing failures are retried, whatever the reply's shape.
func (c *Client) call(ctx context.Context, op, path string, req any, parse func(data []byte, header http.Header) error) error {
	body, err := marshalBody(req)
	if err != nil {
		return err
	}
	refreshed := false
	tries := 0
	backoff := cmp.Or(c.Backoff, DefaultBackoff)
	for {
		tok, err := c.token(ctx)
		if err != nil {
			// The token source failed, and backs off itself.
			return err
		}
		err = c.callOnce(ctx, op, path, tok, body, parse)
		var werr *Error
		switch {
		case err == nil:
			return nil
		case tok != "" && errors.As(err, &werr) && IsTokenError(werr.Code) && !refreshed:
			inv, ok := c.Tokens.(Invalidator)
			if !ok {
				return err
			}
			inv.Invalidate(tok)
			refreshed = true
		case transient(err) && tries < c.retries():
			tries++
			if sleepCtx(ctx, backoff) != nil {
				return err
			}
			backoff *= 2
		default:
			return err
		}
	}
}

// token returns the access token for a call, or "" for none with NoToken.
func (c *Client) token(ctx context.Context) (string, error) {
	switch c.Tokens.(type) {
	case nil:
		return "", errors.New("wechat: Client.Tokens is not set; use NoToken for calls without an access token")
	case NoToken, *NoToken:
		return "", nil
	}
	tok, err := c.Tokens.Token(ctx)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

func (c *Client) retries() int {
	switch {
	case c.Retries < 0:
		return 0
	case c.Retries == 0:
		return DefaultRetries
	}
	return c.Retries
}

// transient reports whether a call's error may pass: WeChat busy, the
// connection failing, or a 5xx from a proxy in front of WeChat. Asking
// again for a code is safe: it is the same code.
func transient(err error) bool {
	var werr *Error
	var serr *StatusError
	switch {
	case errors.As(err, &werr):
		return werr.Code == CodeBusy
	case errors.As(err, &serr):
		return serr.StatusCode >= 500
	case errors.Is(err, ErrBadReply), errors.Is(err, ErrReplyTooLarge),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// callOnce makes one call with the access token tok, none if "".
func (c *Client) callOnce(ctx context.Context, op, path, tok string, body []byte, parse func([]byte, http.Header) error) error {
	max := c.MaxReplySize
	if max <= 0 {
		max = DefaultMaxReplySize
	}
	var q url.Values
	if tok != "" {
		q = url.Values{"access_token": {tok}}
	}
	start := time.Now()
	data, header, err := roundTrip(ctx, c.HTTPClient, http.MethodPost, baseURL(c.BaseURL), path, q, body, max)
	if err == nil {
		err = parse(data, header)
	}
	observe(c.Observer, op, start, err)
	return err
}

// parseCodeReply tells an image from an error by the bytes: WeChat's
// Content-Type is not to be trusted.
func parseCodeReply(data []byte) (*Image, error) {
	if ct := ImageType(data); ct != "" {
		return &Image{Data: data, ContentType: ct}, nil
	}
	if werr := parseError(data); werr != nil {
		return nil, werr
	}
	return nil, ErrBadReply
}

// parseError returns the Error in a JSON error body, or nil.
func parseError(data []byte) *Error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil
	}
	var reply struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if json.Unmarshal(trimmed, &reply) != nil || reply.ErrCode == nil || *reply.ErrCode == 0 {
		return nil
	}
	return &Error{Code: *reply.ErrCode, Message: reply.ErrMsg, Body: data}
}

// roundTrip makes one HTTP exchange and returns the whole body of a 200
// reply (or an Error found in any reply). Errors never include the URL,
// which may carry the access token or the secret.
func roundTrip(ctx context.Context, hc *http.Client, method, base, path string, query url.Values, body []byte, max int64) ([]byte, http.Header, error) {
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("wechat: %s %s: bad base URL", method, path)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(hc, req, method, path, max)
}

// send makes the exchange prepared in req; name stands for the URL in
// errors.
func send(hc *http.Client, req *http.Request, method, name string, max int64) ([]byte, http.Header, error) {
	if hc == nil {
		hc = noRedirects
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, redact(method, name, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > max {
		return nil, nil, ErrReplyTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, nil, redact(method, name, err)
	}
	if int64(len(data)) > max {
		return nil, nil, ErrReplyTooLarge
	}
	if resp.StatusCode != http.StatusOK {
		if werr := parseError(data); werr != nil {
			return nil, nil, werr
		}
		return nil, nil, &StatusError{StatusCode: resp.StatusCode}
	}
	return data, resp.Header, nil
}

// redact replaces a *url.Error, whose message holds the URL with its
// access_token or secret, by one naming only the method and path.
func redact(method, path string, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("wechat: %s %s: %w", method, path, err)
}

// noRedirects is the default HTTP client. WeChat does not redirect, and a
// redirect followed would carry the token or the secret to another host.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func baseURL(s string) string {
	if s == "" {
		return DefaultBaseURL
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ImageType returns image/png or image/jpeg for the bytes of a whole PNG or
// JPEG image, and "" for anything else, a cut-off image included.
func ImageType(data []byte) string {
	switch {
	case wholePNG(data):
		return "image/png"
	case wholeJPEG(data):
		return "image/jpeg"
	}
	return ""
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// wholePNG walks the chunks to IEND, so a cut-off PNG is not whole.
func wholePNG(data []byte) bool {
	if !bytes.HasPrefix(data, pngMagic) {
		return false
	}
	rest := data[len(pngMagic):]
	for len(rest) >= 12 {
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-12) {
			return false
		}
		if string(rest[4:8]) == "IEND" {
			return true
		}
		rest = rest[12+n:]
	}
	return false
}

// wholeJPEG checks the start and end of image markers.
func wholeJPEG(data []byte) bool {
	return len(data) >= 4 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF &&
		data[len(data)-2] == 0xFF && data[len(data)-1] == 0xD9
}
