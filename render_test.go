package wxqrcode

import (
	"bytes"
	"crypto/sha256"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// ScanCode decodes the QR code in an encoded image, drawn on white where
// it is transparent, and returns its content.
func ScanCode(data []byte) (string, error) {
	return scan(data, nil)
}

// scan decodes data with gozxing's QR reader and hints.
func scan(data []byte, hints map[gozxing.DecodeHintType]any) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, hints)
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

// masterEntry is a code as the fake draws it at the master width.
func masterEntry(t testing.TB, content string, fg color.NRGBA, hyaline bool) *entry {
	t.Helper()
	data := wechattest.RenderCode(content, masterWidth, fg, hyaline)
	e := newEntry(data, map[bool]string{false: "image/jpeg", true: "image/png"}[hyaline], sha256.Sum256(data), time.Unix(1700000000, 0).UTC())
	if e.width != masterWidth {
		t.Fatalf("master is %dpx wide, want %d", e.width, masterWidth)
	}
	return e
}

func TestRenderJPEG(t *testing.T) {
	t.Parallel()
	const content = "pages/item/item?id=42"
	master := masterEntry(t, content, color.NRGBA{A: 0xff}, false)
	for _, width := range []int{280, 430, 777} {
		e, err := render(master, width)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(e.data))
		if err != nil {
			t.Fatalf("%d: not a JPEG: %v", width, err)
		}
		if b := img.Bounds(); b.Dx() != width || b.Dy() != width {
			t.Errorf("%d: rendered %v", width, b)
		}
		if e.contentType != "image/jpeg" || e.width != width || !e.stored.Equal(master.stored) || e.etag == master.etag {
			t.Errorf("%d: entry %s %dpx stored %v etag %s", width, e.contentType, e.width, e.stored, e.etag)
		}
		if got, err := ScanCode(e.data); got != content {
			t.Errorf("%d: scanned %q (%v), want %q", width, got, err, content)
		}
	}
}

// A transparent code stays a PNG with straight alpha: the background stays
// fully transparent, and pixels on the edges of the modules keep the line
// colour, with no dark or light fringe from premultiplied values.
func TestRenderHyalinePNG(t *testing.T) {
	t.Parallel()
	const content = "pages/index/index?scene=a1"
	fg := color.NRGBA{R: 200, G: 40, B: 30, A: 0xff}
	master := masterEntry(t, content, fg, true)
	for _, width := range []int{280, 777} {
		e, err := render(master, width)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(e.data))
		if err != nil {
			t.Fatalf("%d: not a PNG: %v", width, err)
		}
		m, ok := img.(*image.NRGBA)
		if !ok || m.Bounds().Dx() != width || m.Bounds().Dy() != width || e.contentType != "image/png" {
			t.Fatalf("%d: decoded %T %v as %s, want NRGBA %dpx", width, img, img.Bounds(), e.contentType, width)
		}
		if c := m.NRGBAAt(0, 0); c.A != 0 {
			t.Errorf("%d: corner %v, want transparent", width, c)
		}
		var opaque, edge int
		for i := 0; i < len(m.Pix); i += 4 {
			c := color.NRGBA{m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3]}
			switch {
			case c.A == 0:
				continue
			case c.A == 0xff:
				opaque++
			default:
				edge++
			}
			// Straight colour is the line colour, give or take rounding
			// at very low alpha.
			tol := 2 + 255/int(c.A)
			if absDiff(c.R, fg.R) > tol || absDiff(c.G, fg.G) > tol || absDiff(c.B, fg.B) > tol {
				t.Fatalf("%d: pixel %d is %v, want the colour of %v", width, i/4, c, fg)
			}
		}
		if opaque == 0 || edge == 0 {
			t.Errorf("%d: %d opaque and %d edge pixels, want both", width, opaque, edge)
		}
		if got, err := ScanCode(e.data); got != content {
			t.Errorf("%d: scanned %q (%v), want %q", width, got, err, content)
		}
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// A master that is not square keeps its aspect ratio.
func TestRenderKeepsAspect(t *testing.T) {
	t.Parallel()
	src := image.NewRGBA(image.Rect(0, 0, 600, 300))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, nil); err != nil {
		t.Fatal(err)
	}
	master := newEntry(buf.Bytes(), "image/jpeg", sha256.Sum256(buf.Bytes()), time.Now())
	e, err := render(master, 300)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(e.data))
	if err != nil || cfg.Width != 300 || cfg.Height != 150 {
		t.Errorf("rendered %dx%d (%v), want 300x150", cfg.Width, cfg.Height, err)
	}
}

func TestRenderRefusesBrokenMaster(t *testing.T) {
	t.Parallel()
	data := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0xFF, 0xD9}
	if _, err := render(newEntry(data, "image/jpeg", sha256.Sum256(data), time.Now()), 430); err == nil {
		t.Error("rendered a master that does not decode")
	}
}

// BenchmarkRenderJPEG renders a new width from a 1280-pixel colour JPEG
// master, as WeChat sends (the fake's black codes are grey JPEGs).
func BenchmarkRenderJPEG(b *testing.B) {
	master := masterEntry(b, "pages/item/item?id=42", color.NRGBA{R: 0x1a, G: 0x1a, B: 0x1a, A: 0xff}, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render(master, 430); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderPNG renders a new width from a 1280-pixel transparent
// PNG master.
func BenchmarkRenderPNG(b *testing.B) {
	master := masterEntry(b, "pages/item/item?id=42", color.NRGBA{A: 0xff}, true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render(master, 430); err != nil {
			b.Fatal(err)
		}
	}
}
