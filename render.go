package wxqrcode

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/draw"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// masterWidth is the width WeChat is asked to draw every code at: its
// largest, so that every width served is the master itself or a
// downscale of it, which keeps module edges sharp.
const masterWidth = wechat.MaxWidth

// jpegQuality is the quality of rendered JPEG widths: high enough that
// the blocks' edges carry no ringing a scanner could trip on.
const jpegQuality = 92

// scaler resamples masters, after halve has brought them within twice
// the width, where its 2×2 samples still weigh every source pixel:
// bilinear, which never overshoots and allocates nothing beyond the
// image. Catmull-Rom is sharper but rings; in a transparent PNG its
// clipped alpha shifts the colour of every module's edge (measured: by up
// to 47 of 255). Nearest neighbour leaves round codes and logos jagged.
var scaler = draw.ApproxBiLinear

// render draws master at width pixels wide, and high in proportion (codes
// are square), in the master's format: a JPEG stays a JPEG, a PNG stays a
// PNG with its alpha. The variant keeps the master's time, so its
// Last-Modified is the master's; its ETag is its own.
func render(master *entry, width int) (*entry, error) {
	if master.content != "" {
		// An official account's code, drawn by this module: draw it again.
		return redraw(master, width)
	}
	src, _, err := image.Decode(bytes.NewReader(master.data))
	if err != nil {
		return nil, fmt.Errorf("decoding the cached code to resize it: %v", err)
	}
	sb := src.Bounds()
	height := max(1, (sb.Dy()*width+sb.Dx()/2)/sb.Dx())
	src = halve(src, width)
	dr := image.Rect(0, 0, width, height)
	var buf bytes.Buffer
	switch master.contentType {
	case "image/png":
		// NRGBA, so colours are kept unpremultiplied; the scaler works in
		// 16-bit premultiplied values in between, so that transparent
		// pixels bleed no colour into the edges, and faint edge pixels
		// keep their colour (an 8-bit RGBA step would not).
		dst := image.NewNRGBA(dr)
		scaler.Scale(dst, dr, src, src.Bounds(), draw.Src, nil)
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, dst)
	default:
		dst := image.NewRGBA(dr)
		scaler.Scale(dst, dr, src, src.Bounds(), draw.Src, nil)
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: jpegQuality})
	}
	if err != nil {
		return nil, fmt.Errorf("encoding a resized code: %v", err)
	}
	return newEntry(buf.Bytes(), master.contentType, sha256.Sum256(buf.Bytes()), master.stored), nil
}

// halve averages src down by half, as often as it stays at least width
// wide: at exactly half, bilinear sampling is the mean of each 2×2 block,
// so no source pixel is skipped however small the width. The halves are
// premultiplied RGBA, which the scaler reads fastest.
func halve(src image.Image, width int) image.Image {
	for b := src.Bounds(); b.Dx()/2 >= width; b = src.Bounds() {
		r := image.Rect(0, 0, b.Dx()/2, b.Dy()/2)
		dst := image.NewRGBA(r)
		draw.ApproxBiLinear.Scale(dst, r, src, image.Rect(b.Min.X, b.Min.Y, b.Min.X+2*r.Dx(), b.Min.Y+2*r.Dy()), draw.Src, nil)
		src = dst
	}
	return src
}
