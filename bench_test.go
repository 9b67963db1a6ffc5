package wxqrcode

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// discard is a ResponseWriter that keeps nothing, so the benchmarks
// measure the handler rather than a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// benchImage is a whole JPEG of a typical code's size.
var benchImage = append(append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 24<<10)...), 0xFF, 0xD9)

// benchHandler is a handler as Provision leaves it, with one code cached.
func benchHandler(b *testing.B, memory bool) (*Handler, *http.Request) {
	h := &Handler{API: apiQRCode, appID: "wx0123456789abcdef", logger: zap.NewNop()}
	h.setTemplateDefaults()
	h.cache = &codeCache{storage: &certmagic.FileStorage{Path: b.TempDir()}}
	if memory {
		mem, err := newMemoryCache(DefaultMemoryCache)
		if err != nil {
			b.Fatal(err)
		}
		h.mem = mem
	}
	r := httptest.NewRequest(http.MethodGet, "/qr?path=pages%2Fitem%2Fitem%3Fid%3D42", nil)
	cr, err := h.resolveRequest(caddyhttp.NewTestReplacer(r.Clone(context.Background())))
	if err != nil {
		b.Fatal(err)
	}
	e, err := prepare(&wechat.Image{Data: benchImage})
	if err != nil {
		b.Fatal(err)
	}
	if err := h.cache.store(context.Background(), cacheKey(cr.canonical), cr.canonical, e); err != nil {
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

// BenchmarkHitMemory is a cached hit from memory: the hot path.
func BenchmarkHitMemory(b *testing.B) {
	h, r := benchHandler(b, true)
	w := &discard{h: http.Header{}}
	serve(b, h, r, w) // load into memory
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve(b, h, r, w)
	}
}

// BenchmarkHitStorage is a cached hit read from the file_system storage.
func BenchmarkHitStorage(b *testing.B) {
	h, r := benchHandler(b, false)
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
