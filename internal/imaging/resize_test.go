package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// A JPEG stays a JPEG of exactly the width asked, square as its master,
// and scans.
func TestResizeJPEG(t *testing.T) {
	t.Parallel()
	const content = "pages/item/item?id=42"
	for _, fg := range []color.NRGBA{{A: 0xff}, {R: 0x1a, G: 0x1a, B: 0x1a, A: 0xff}, {R: 0x20, G: 0x40, B: 0xa0, A: 0xff}} {
		data := master(content, fg, false)
		for _, width := range []int{280, 430, 777, 1279} {
			out, err := Resize(data, "image/jpeg", width)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(out))
			if err != nil || cfg.Width != width || cfg.Height != width {
				t.Errorf("%v %d: decoded %dx%d (%v)", fg, width, cfg.Width, cfg.Height, err)
			}
			if got := scan(t, out); got != content {
				t.Errorf("%v %d: scanned %q, want %q", fg, width, got, content)
			}
		}
	}
}

// A transparent code stays a PNG with straight alpha: the background stays
// fully transparent, and pixels on the edges of the modules keep the line
// colour, with no dark or light fringe from premultiplied values.
func TestResizeTransparentPNG(t *testing.T) {
	t.Parallel()
	const content = "pages/index/index?scene=a1"
	fg := color.NRGBA{R: 200, G: 40, B: 30, A: 0xff}
	data := master(content, fg, true)
	for _, width := range []int{280, 430, 777, 1279} {
		out, err := Resize(data, "image/png", width)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("%d: not a PNG: %v", width, err)
		}
		m, ok := img.(*image.NRGBA)
		if !ok || m.Bounds().Dx() != width || m.Bounds().Dy() != width {
			t.Fatalf("%d: decoded %T %v, want NRGBA %dpx", width, img, img.Bounds(), width)
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
		if got := scan(t, out); got != content {
			t.Errorf("%d: scanned %q, want %q", width, got, content)
		}
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// Resized, a code is close to the same code drawn directly at that width:
// the mean difference of luminance, of alpha for a transparent PNG, is
// small at every 149th width, and the extremes (white, the line colour,
// transparent) stay exact in the flat parts.
func TestResizeMatchesDirectDrawing(t *testing.T) {
	t.Parallel()
	const content = "pages/item/item?id=42"
	for _, tt := range []struct {
		name    string
		fg      color.NRGBA
		hyaline bool
	}{
		{"grey jpeg", color.NRGBA{A: 0xff}, false},
		{"colour jpeg", color.NRGBA{R: 0x20, G: 0x40, B: 0xa0, A: 0xff}, false},
		{"transparent png", color.NRGBA{R: 200, G: 40, B: 30, A: 0xff}, true},
	} {
		data := master(content, tt.fg, tt.hyaline)
		ct := map[bool]string{false: "image/jpeg", true: "image/png"}[tt.hyaline]
		var worst, sum float64
		var n int
		for width := 280; width < 1280; width += 149 {
			out, err := Resize(data, ct, width)
			if err != nil {
				t.Fatal(err)
			}
			got := decode(t, out)
			want := decode(t, wechattest.RenderCode(content, width, tt.fg, tt.hyaline))
			d := meanDiff(got, want, tt.hyaline)
			worst, sum, n = max(worst, d), sum+d, n+1
		}
		t.Logf("%s: mean difference %.4f, at worst %.4f", tt.name, sum/float64(n), worst)
		if worst > 0.035 {
			t.Errorf("%s: mean difference up to %.4f from the code drawn at the width, want at most 0.035", tt.name, worst)
		}
	}
}

func decode(t *testing.T, data []byte) image.Image {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// meanDiff is the mean absolute difference of a and b, as a share of
// full scale: of alpha when alpha, else of luminance.
func meanDiff(a, b image.Image, alpha bool) float64 {
	pa, pb := nrgba(a).Pix, nrgba(b).Pix
	var sum float64
	for i := 0; i < len(pa); i += 4 {
		sum += abs(level(pa[i:i+4], alpha) - level(pb[i:i+4], alpha))
	}
	return sum / float64(len(pa)/4) / 0xff
}

func nrgba(m image.Image) *image.NRGBA {
	dst := image.NewNRGBA(m.Bounds())
	draw.Draw(dst, dst.Rect, m, m.Bounds().Min, draw.Src)
	return dst
}

// level is the alpha, or else the luminance, of the straight colour p.
func level(p []byte, alpha bool) float64 {
	if alpha {
		return float64(p[3])
	}
	return 0.299*float64(p[0]) + 0.587*float64(p[1]) + 0.114*float64(p[2])
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// A master that is not square keeps its aspect ratio, down and up.
func TestResizeKeepsAspect(t *testing.T) {
	t.Parallel()
	for _, ct := range []string{"image/jpeg", "image/png"} {
		for _, width := range []int{300, 900} {
			src := image.NewNRGBA(image.Rect(0, 0, 600, 300))
			var buf bytes.Buffer
			if ct == "image/png" {
				_ = png.Encode(&buf, src)
			} else {
				_ = jpeg.Encode(&buf, src, nil)
			}
			out, err := Resize(buf.Bytes(), ct, width)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(out))
			if err != nil || cfg.Width != width || cfg.Height != width/2 {
				t.Errorf("%s: resized to %dx%d (%v), want %dx%d", ct, cfg.Width, cfg.Height, err, width, width/2)
			}
		}
	}
}

func TestResizeRefuses(t *testing.T) {
	t.Parallel()
	good := master("pages/a", color.NRGBA{A: 0xff}, false)
	for _, tt := range []struct {
		name  string
		data  []byte
		ct    string
		width int
	}{
		{"broken jpeg", []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0, 0xff, 0xd9}, "image/jpeg", 430},
		{"gif", good, "image/gif", 430},
		{"no width", good, "image/jpeg", 0},
	} {
		if _, err := Resize(tt.data, tt.ct, tt.width); err == nil {
			t.Errorf("%s: resized", tt.name)
		}
	}
}

// The benchmarks resize 1280-pixel masters as the fake WeChat draws them:
// a colour JPEG of a near-black line, as the handler's BenchmarkRenderJPEG
// (its chroma is neutral, so it is written grey), one of a blue line (as a
// code with a colour logo is written), and a transparent PNG.
func BenchmarkResizeJPEG(b *testing.B) {
	benchResize(b, master("pages/item/item?id=42", color.NRGBA{R: 0x1a, G: 0x1a, B: 0x1a, A: 0xff}, false), "image/jpeg")
}

func BenchmarkResizeJPEGColour(b *testing.B) {
	benchResize(b, master("pages/item/item?id=42", color.NRGBA{R: 0x20, G: 0x40, B: 0xa0, A: 0xff}, false), "image/jpeg")
}

func BenchmarkResizePNG(b *testing.B) {
	benchResize(b, master("pages/item/item?id=42", color.NRGBA{A: 0xff}, true), "image/png")
}

func benchResize(b *testing.B, data []byte, ct string) {
	for _, width := range []int{430, 777} {
		b.Run(fmt.Sprint(width), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Resize(data, ct, width); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Each kind of image a decoder gives is resized, to the width asked, and
// scans: grey, opaque RGB, paletted and 16-bit PNGs, as well as the
// JPEGs and transparent PNGs above.
func TestResizeKinds(t *testing.T) {
	t.Parallel()
	const content = "pages/kinds/kinds"
	code := decode(t, master(content, color.NRGBA{A: 0xff}, false))
	b := code.Bounds()
	kinds := []draw.Image{
		image.NewGray(b),
		image.NewRGBA(b),
		image.NewPaletted(b, color.Palette{color.White, color.Black, color.Gray{Y: 0x80}}),
		image.NewGray16(b),
	}
	for _, m := range kinds {
		draw.Draw(m, b, code, b.Min, draw.Src)
		var buf bytes.Buffer
		if err := png.Encode(&buf, m); err != nil {
			t.Fatal(err)
		}
		out, err := Resize(buf.Bytes(), "image/png", 430)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(out))
		if err != nil || cfg.Width != 430 || cfg.Height != 430 {
			t.Errorf("%T: resized to %dx%d (%v)", m, cfg.Width, cfg.Height, err)
		}
		if got := scan(t, out); got != content {
			t.Errorf("%T: scanned %q, want %q", m, got, content)
		}
	}
}
