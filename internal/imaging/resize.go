package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"sync"
)

// JPEGQuality is the quality of resized JPEGs: high enough that the
// blocks' edges carry no ringing a scanner could trip on.
const JPEGQuality = 92

// pngEncoder writes resized PNGs fast, its zlib writer and row buffers
// reused across calls.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngBuffers{}}

type pngBuffers struct{ sync.Pool }

func (p *pngBuffers) Get() *png.EncoderBuffer {
	b, _ := p.Pool.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngBuffers) Put(b *png.EncoderBuffer) { p.Pool.Put(b) }

// Resize draws the PNG or JPEG image data at width pixels wide, and high
// in proportion, in the format contentType names (image/png or
// image/jpeg): a JPEG stays a JPEG, a PNG stays a PNG, with its alpha.
//
// Each pixel drawn is the mean of the area of the source it covers (with
// the pixels weighted by their alpha, so that transparent ones lend it no
// colour): no source pixel is skipped at any width, and unlike sharper
// filters it never overshoots, so module edges carry no ringing. It
// works on the planes the decoders give (luma and subsampled chroma, grey,
// or 8-bit colour with alpha) without converting them; a JPEG whose
// chroma is neutral everywhere, as black codes are, is written grey.
func Resize(data []byte, contentType string, width int) ([]byte, error) {
	if contentType != "image/png" && contentType != "image/jpeg" {
		return nil, fmt.Errorf("resizing %s, want image/png or image/jpeg", contentType)
	}
	if width < 1 {
		return nil, fmt.Errorf("resizing to %d pixels wide", width)
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decoding an image to resize it: %v", err)
	}
	sb := src.Bounds()
	height := max(1, (sb.Dy()*width+sb.Dx()/2)/sb.Dx())
	dst := resize(src, width, height)
	var buf bytes.Buffer
	if contentType == "image/png" {
		err = pngEncoder.Encode(&buf, dst)
	} else {
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: JPEGQuality})
	}
	if err != nil {
		return nil, fmt.Errorf("encoding a resized image: %v", err)
	}
	return buf.Bytes(), nil
}

// resize area-averages src to w×h pixels, as a grey, YCbCr or NRGBA
// image after its kind.
func resize(src image.Image, w, h int) image.Image {
	r := image.Rect(0, 0, w, h)
	switch m := src.(type) {
	case *image.Gray:
		dst := image.NewGray(r)
		resizePlane(dst.Pix, w, h, dst.Stride, m.Pix, m.Rect.Dx(), m.Rect.Dy(), m.Stride)
		return dst
	case *image.YCbCr:
		sw, sh := m.Rect.Dx(), m.Rect.Dy()
		y := m.Y[m.YOffset(m.Rect.Min.X, m.Rect.Min.Y):]
		off := m.COffset(m.Rect.Min.X, m.Rect.Min.Y)
		cr := chromaRect(m)
		if neutral(m.Cb[off:], cr, m.CStride) && neutral(m.Cr[off:], cr, m.CStride) {
			// Grey written as grey: a third less to encode.
			dst := image.NewGray(r)
			resizePlane(dst.Pix, w, h, dst.Stride, y, sw, sh, m.YStride)
			return dst
		}
		dst := image.NewYCbCr(r, m.SubsampleRatio)
		resizePlane(dst.Y, w, h, dst.YStride, y, sw, sh, m.YStride)
		dcr := chromaRect(dst)
		resizePlane(dst.Cb, dcr.Dx(), dcr.Dy(), dst.CStride, m.Cb[off:], cr.Dx(), cr.Dy(), m.CStride)
		resizePlane(dst.Cr, dcr.Dx(), dcr.Dy(), dst.CStride, m.Cr[off:], cr.Dx(), cr.Dy(), m.CStride)
		return dst
	case *image.NRGBA:
		dst := image.NewNRGBA(r)
		resizeRGBA(dst, m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Rect.Dx(), m.Rect.Dy(), m.Stride, false)
		return dst
	case *image.RGBA:
		dst := image.NewNRGBA(r)
		resizeRGBA(dst, m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Rect.Dx(), m.Rect.Dy(), m.Stride, true)
		return dst
	}
	// Paletted, 16-bit or CMYK: rare for codes, so converted once.
	rgba := image.NewRGBA(image.Rect(0, 0, src.Bounds().Dx(), src.Bounds().Dy()))
	draw.Draw(rgba, rgba.Rect, src, src.Bounds().Min, draw.Src)
	return resize(rgba, w, h)
}

// chromaRect is the rectangle of m's chroma planes, from the origin.
func chromaRect(m *image.YCbCr) image.Rectangle {
	lo := m.COffset(m.Rect.Min.X, m.Rect.Min.Y)
	hi := m.COffset(m.Rect.Max.X-1, m.Rect.Max.Y-1)
	return image.Rect(0, 0, hi%m.CStride-lo%m.CStride+1, hi/m.CStride-lo/m.CStride+1)
}

// neutral reports whether the chroma plane p is grey (128) all over r.
func neutral(p []byte, r image.Rectangle, stride int) bool {
	for y := range r.Dy() {
		row := p[y*stride : y*stride+r.Dx()]
		if bytes.Count(row, []byte{128}) != len(row) {
			return false
		}
	}
	return true
}
