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
		e, err := render(master, width, defaultStyle)
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

// A transparent code stays a transparent PNG, and scans (its pixels are
// checked in internal/imaging).
func TestRenderHyalinePNG(t *testing.T) {
	t.Parallel()
	const content = "pages/index/index?scene=a1"
	master := masterEntry(t, content, color.NRGBA{R: 200, G: 40, B: 30, A: 0xff}, true)
	e, err := render(master, 430, defaultStyle)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(e.data))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if _, ok := img.(*image.NRGBA); !ok || e.contentType != "image/png" || e.width != 430 {
		t.Fatalf("decoded %T %v as %s, want NRGBA 430px", img, img.Bounds(), e.contentType)
	}
	if got, err := ScanCode(e.data); got != content {
		t.Errorf("scanned %q (%v), want %q", got, err, content)
	}
}

func TestRenderRefusesBrokenMaster(t *testing.T) {
	t.Parallel()
	data := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0xFF, 0xD9}
	if _, err := render(newEntry(data, "image/jpeg", sha256.Sum256(data), time.Now()), 430, defaultStyle); err == nil {
		t.Error("rendered a master that does not decode")
	}
}

// BenchmarkRenderJPEG renders a new width from a 1280-pixel colour JPEG
// master, as WeChat sends (the fake's black codes are grey JPEGs).
func BenchmarkRenderJPEG(b *testing.B) {
	master := masterEntry(b, "pages/item/item?id=42", color.NRGBA{R: 0x1a, G: 0x1a, B: 0x1a, A: 0xff}, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render(master, 430, defaultStyle); err != nil {
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
		if _, err := render(master, 430, defaultStyle); err != nil {
			b.Fatal(err)
		}
	}
}
