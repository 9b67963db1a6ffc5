package imaging

import (
	"bytes"
	"image"
	"testing"
)

const testOAURL = "http://weixin.qq.com/q/02AbCdEfGhIjKlMnOpQrSt"

// DrawQR draws exactly width pixels square, whole pixels per module, with
// the quiet zone, and the code scans at every width served.
func TestDrawQR(t *testing.T) {
	t.Parallel()
	for _, width := range []int{280, 430, 777, 1280} {
		data, err := DrawQR(testOAURL, width)
		if err != nil {
			t.Fatal(err)
		}
		cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil || format != "png" || cfg.Width != width || cfg.Height != width {
			t.Errorf("%dpx: decoded %s %dx%d (%v)", width, format, cfg.Width, cfg.Height, err)
		}
		if got := scan(t, data); got != testOAURL {
			t.Errorf("%dpx scans as %q", width, got)
		}
		img, _, _ := image.Decode(bytes.NewReader(data))
		// The quiet zone: four modules of at least one pixel all round.
		for i := range 4 {
			if r, _, _, _ := img.At(i, i).RGBA(); r != 0xffff {
				t.Errorf("%dpx: pixel (%d,%d) is not white", width, i, i)
			}
		}
	}
	if _, err := DrawQR(testOAURL, 20); err == nil {
		t.Error("a code drawn in 20 pixels, want an error")
	}
}
