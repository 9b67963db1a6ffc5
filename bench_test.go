package wxqrcode

import (
	"context"
	"fmt"
	"image/color"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// discard is a ResponseWriter that keeps nothing, so the benchmarks
// measure the handler rather than a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// benchImage is a master as the fake WeChat draws it.
var benchImage = wechattest.RenderCode("pages/item/item?id=42", masterWidth, color.NRGBA{A: 0xff}, false)

// benchHandler is a handler as Provision leaves it, with one code cached,
// and a request for it at width.
func benchHandler(b *testing.B, memory bool, width int) (*Handler, *http.Request) {
	h := &Handler{API: apiQRCode, AppID: "wx0123456789abcdef", logger: zap.NewNop(), clock: newClock()}
	h.resolveConfig()
	h.cache = &codeCache{storage: &certmagic.FileStorage{Path: b.TempDir()}}
	if memory {
		mem, err := newMemoryCache(DefaultMemoryCache)
		if err != nil {
			b.Fatal(err)
		}
		h.mem = mem
	}
	r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/qr?path=pages%%2Fitem%%2Fitem%%3Fid%%3D42&width=%d", width), nil)
	cr, err := h.resolveRequest(caddyhttp.NewTestReplacer(r.Clone(context.Background())))
	if err != nil {
		b.Fatal(err)
	}
	e, err := prepare(&fetched{data: benchImage, numUsed: -1}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	value, err := encodeEntry(cr.canonical, e)
	if err != nil {
		b.Fatal(err)
	}
	if err := h.cache.storage.Store(context.Background(), layout.code(cacheKey(cr.canonical)), value); err != nil {
		b.Fatal(err)
	}
	return h, r
}

// serve runs one request as Caddy would: a fresh replacer per request,
// with the request's placeholders.
func serve(b *testing.B, handler caddyhttp.MiddlewareHandler, r *http.Request, w *discard) {
	req := r.WithContext(r.Context())
	caddyhttp.NewTestReplacer(req)
	clear(w.h)
	if err := handler.ServeHTTP(w, req, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkHitMemory is a cached hit of the master's width from memory.
func BenchmarkHitMemory(b *testing.B) {
	h, r := benchHandler(b, true, masterWidth)
	w := &discard{h: http.Header{}}
	serve(b, h, r, w) // load into memory
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve(b, h, r, w)
	}
}

// BenchmarkHitRendered is a cached hit of a rendered width from memory:
// the hot path, as most pages ask for 430 pixels.
func BenchmarkHitRendered(b *testing.B) {
	h, r := benchHandler(b, true, wechat.DefaultWidth)
	w := &discard{h: http.Header{}}
	serve(b, h, r, w) // render into memory
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve(b, h, r, w)
	}
}

// BenchmarkHitStorage is a cached hit of the master's width read from the
// file_system storage.
func BenchmarkHitStorage(b *testing.B) {
	h, r := benchHandler(b, false, masterWidth)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve(b, h, r, w)
	}
}

// BenchmarkRespondBaseline is Caddy's respond with a body of the same
// size, the baseline the hit path is measured against.
func BenchmarkRespondBaseline(b *testing.B) {
	sr := &caddyhttp.StaticResponse{StatusCode: "200", Body: strings.Repeat("x", len(benchImage))}
	r := httptest.NewRequest(http.MethodGet, "/qr?path=pages%2Fitem%2Fitem%3Fid%3D42", nil)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve(b, sr, r, w)
	}
}
