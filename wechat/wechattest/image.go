package wechattest

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"sync"
)

const (
	codeModules = 21 // a version-1 QR code's module count, for the look
	quietCells  = 2
	gridCells   = codeModules + 2*quietCells
)

// renderCacheSize bounds the cache to a few megabytes.
const renderCacheSize = 128

// renderCache holds recent renders by seed. It is shared by all servers
// because a render depends only on its seed, and it pays off because the
// encoder dominates a call's cost (tens of milliseconds under the race
// detector) while tests ask for the same codes again and again.
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

// renderCode draws a width×width block pattern chosen by seed and encodes
// it as JPEG, or as PNG with a transparent background when hyaline. Rows are
// built once per band of cells and copied, so the cost is dominated by the
// encoder rather than per-pixel work.
func renderCode(seed [32]byte, width int, fg color.NRGBA, hyaline bool) []byte {
	rng := rand.New(rand.NewChaCha8(seed))
	var dark [gridCells][gridCells]bool
	for y := quietCells; y < quietCells+codeModules; y++ {
		for x := quietCells; x < quietCells+codeModules; x++ {
			dark[y][x] = rng.Uint32()&1 == 1
		}
	}

	bounds := image.Rect(0, 0, width, width)
	fgPix := []byte{fg.R, fg.G, fg.B, fg.A}
	bgPix := []byte{0xff, 0xff, 0xff, 0xff}
	var img image.Image
	var pix []byte
	var stride int
	if hyaline {
		m := image.NewNRGBA(bounds)
		img, pix, stride = m, m.Pix, m.Stride
		bgPix = []byte{0, 0, 0, 0}
	} else {
		// All colours are opaque, so RGBA's premultiplied bytes equal
		// NRGBA's and the same pixel bytes serve both.
		m := image.NewRGBA(bounds)
		img, pix, stride = m, m.Pix, m.Stride
	}

	row := make([]byte, width*4)
	for cy := range gridCells {
		fill(row, bgPix)
		for cx := range gridCells {
			if dark[cy][cx] {
				fill(row[cx*width/gridCells*4:(cx+1)*width/gridCells*4], fgPix)
			}
		}
		for y := cy * width / gridCells; y < (cy+1)*width/gridCells; y++ {
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
