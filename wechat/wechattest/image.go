package wechattest

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"sync"

	"github.com/boombuler/barcode/qr"
)

// quietModules is the light margin around the code, in modules, as the QR
// standard asks.
const quietModules = 4

// renderCacheSize bounds the cache to a few tens of megabytes of masters.
const renderCacheSize = 128

// renderCache holds recent renders by seed. It is shared by all servers
// because a render depends only on its seed, and it pays off because the
// encoders dominate a call's cost (tens of milliseconds for a 1280-pixel
// code under the race detector) while tests ask for the same codes again
// and again.
var renderCache = struct {
	sync.Mutex
	m map[[32]byte][]byte
}{m: map[[32]byte][]byte{}}

// cachedRender returns the cached bytes for seed, or renders and caches
// them. Cached slices are shared and never modified.
func cachedRender(seed [32]byte, render func() []byte) []byte {
	renderCache.Lock()
	b, ok := renderCache.m[seed]
	renderCache.Unlock()
	if ok {
		return b
	}
	b = render()
	renderCache.Lock()
	defer renderCache.Unlock()
	if len(renderCache.m) >= renderCacheSize {
		// Evict an arbitrary entry: any will do for a test fake.
		for k := range renderCache.m {
			delete(renderCache.m, k)
			break
		}
	}
	renderCache.m[seed] = b
	return b
}

// RenderCode draws a real QR code of content, width×width pixels in fg on
// white, and encodes it as JPEG, or as PNG with a transparent background
// when hyaline: the images the fake serves for createQRCode.
func RenderCode(content string, width int, fg color.NRGBA, hyaline bool) []byte {
	return renderCode(content, qr.M, width, fg, hyaline)
}

// renderCode draws at the error correction level, which tells the APIs'
// codes apart when they hold the same content. Rows are built once per
// band of modules and copied, so the cost is dominated by the encoders
// rather than per-pixel work.
func renderCode(content string, level qr.ErrorCorrectionLevel, width int, fg color.NRGBA, hyaline bool) []byte {
	code, err := qr.Encode(content, level, qr.Auto)
	if err != nil {
		// The fake checks lengths as WeChat does, far below QR's capacity.
		panic("wechattest: encoding a QR code: " + err.Error())
	}
	modules := code.Bounds().Dx()
	grid := modules + 2*quietModules
	dark := func(cx, cy int) bool {
		x, y := cx-quietModules, cy-quietModules
		return x >= 0 && y >= 0 && x < modules && y < modules && code.At(x, y) == color.Black
	}

	bounds := image.Rect(0, 0, width, width)
	fgPix := []byte{fg.R, fg.G, fg.B, fg.A}
	bgPix := []byte{0xff, 0xff, 0xff, 0xff}
	var img image.Image
	var pix []byte
	var stride int
	switch {
	case hyaline:
		m := image.NewNRGBA(bounds)
		img, pix, stride = m, m.Pix, m.Stride
		bgPix = []byte{0, 0, 0, 0}
	case fg == color.NRGBA{A: 0xff}:
		// Black on white is a grey JPEG: one component instead of three
		// and no colour conversion halve the encoder's time, which
		// dominates a call under the race detector at 1280 pixels.
		m := image.NewGray(bounds)
		img, pix, stride = m, m.Pix, m.Stride
		fgPix, bgPix = []byte{0}, []byte{0xff}
	default:
		// All colours are opaque, so RGBA's premultiplied bytes equal
		// NRGBA's and the same pixel bytes serve both.
		m := image.NewRGBA(bounds)
		img, pix, stride = m, m.Pix, m.Stride
	}

	bpp := len(fgPix)
	row := make([]byte, width*bpp)
	for cy := range grid {
		fill(row, bgPix)
		for cx := range grid {
			if dark(cx, cy) {
				fill(row[cx*width/grid*bpp:(cx+1)*width/grid*bpp], fgPix)
			}
		}
		for y := cy * width / grid; y < (cy+1)*width/grid; y++ {
			copy(pix[y*stride:], row)
		}
	}

	var buf bytes.Buffer
	// Encoding into a bytes.Buffer cannot fail for these images.
	if hyaline {
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		_ = enc.Encode(&buf, img)
	} else {
		_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
	}
	return buf.Bytes()
}

// fill repeats pat over dst by doubling copies, which is far cheaper than a
// per-pixel loop (especially under the race detector).
func fill(dst, pat []byte) {
	n := copy(dst, pat)
	for n < len(dst) {
		n += copy(dst[n:], dst[:n])
	}
}
