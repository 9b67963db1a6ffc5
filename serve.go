package wxqrcode

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// ServeHTTP answers with the code image, or with a JSON error; with
// errors caddy, it returns the error to Caddy instead.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// Every answer is an image or JSON of its stated type, never a page.
	w.Header()["X-Content-Type-Options"] = nosniff
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return h.fail(w, nil, localProblem(http.StatusMethodNotAllowed, codeMethod, "wxqrcode: only GET and HEAD are allowed"))
	}
	cr, err := h.parse(r)
	if err = h.authorize(cr, err); err != nil {
		return h.fail(w, cr, err)
	}
	if cr.wxaLink != nil {
		return h.serveLink(w, r, cr)
	}
	var e *entry
	var outcome string
	if cr.api == apiLink {
		e, outcome, err = h.drawn(r.Context(), cr)
	} else {
		e, outcome, err = h.sized(r.Context(), cr)
	}
	if err != nil && r.Context().Err() != nil {
		h.logger.Debug("client went away", zap.String("key", cr.key))
		return nil
	}
	if err != nil {
		return h.fail(w, cr, err)
	}
	w.Header()["Cache-Status"] = cacheStatus[outcome]
	countRequest(outcome, serveEntry(w, r, e, h.cacheScope, h.clock))
	return nil
}

// cacheStatus says, as RFC 9211's Cache-Status header, where an answer
// came from; caddy wxqrcode prefetch reads it.
var cacheStatus = map[string][]string{
	outcomeMemoryHit:  {"wxqrcode; hit; detail=memory"},
	outcomeStorageHit: {"wxqrcode; hit; detail=storage"},
	outcomeRendered:   {"wxqrcode; hit; detail=rendered"},
	outcomeMiss:       {"wxqrcode; fwd=uri-miss; stored"},
}

// Header values every answer shares, never appended to.
var (
	nosniff      = []string{"nosniff"}
	acceptRanges = []string{"bytes"}
	// immutable is Cache-Control by scope for a code that never changes.
	immutable = map[string][]string{
		"public":  {"public, " + cacheControl},
		"private": {"private, " + cacheControl},
	}
)

// fail logs err, an error or a *problem, and answers with its problem, or
// with errors caddy returns it as a handler error for handle_errors.
// Errors of this module and of package wechat carry no secret or token.
func (h *Handler) fail(w http.ResponseWriter, cr *codeRequest, err error) error {
	var p *problem
	ok := errors.As(err, &p)
	if !ok {
		p = problemFor(err)
	}
	fields := []zap.Field{zap.Int("status", p.status), zap.Int("errcode", p.code), zap.String("errmsg", p.message)}
	if !ok {
		fields = append(fields, zap.Error(err))
	}
	if cr != nil {
		fields = append(fields, zap.String("api", cr.api))
		if cr.key != "" {
			fields = append(fields, zap.String("key", cr.key))
		}
	}
	outcome := "rejected"
	if p.status >= http.StatusInternalServerError {
		outcome = "error"
	}
	countRequest(outcome, p.status)
	switch {
	case p.code == codeBusy:
		// A bound at work: under a flood, one line per 10 seconds with
		// the count of those held back, not one per request.
		h.faults.warn("code request refused: busy", fields...)
	case p.status >= http.StatusInternalServerError:
		h.logger.Error("code request failed", fields...)
	default:
		h.logger.Debug("code request refused", fields...)
	}
	if h.caddyErrors {
		p.setHeaders(w.Header())
		return caddyhttp.Error(p.status, fmt.Errorf("errcode %d: %s", p.code, p.message))
	}
	p.write(w)
	return nil
}

// cacheControl is what a code gets after its scope (public or private)
// unless a header directive set one: a code never changes.
const cacheControl = "max-age=31536000, immutable"

// serveEntry writes the image like a static file, fresh for as long as it
// is at now, and returns the status.
// A plain GET or HEAD gets the prepared headers and the bytes; conditional
// and range requests go through http.ServeContent.
func serveEntry(w http.ResponseWriter, r *http.Request, e *entry, scope string, clock *handlerClock) int {
	hdr := w.Header()
	hdr["Content-Type"] = e.header.contentType
	hdr["Etag"] = e.header.etag
	// Ranges work (http.ServeContent below), so say so, as file_server does.
	hdr["Accept-Ranges"] = acceptRanges
	setFreshness(hdr, e, scope, clock)
	if r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" ||
		r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "" {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		http.ServeContent(rec, r, "", e.stored, bytes.NewReader(e.data))
		return rec.status
	}
	hdr["Last-Modified"] = e.header.lastModified
	hdr["Content-Length"] = e.header.length
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.data)
	}
	return http.StatusOK
}

// statusRecorder notes the status http.ServeContent chose.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
