package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/draw"
)

// JPEGQuality is the quality of resized JPEGs: high enough that the
// blocks' edges carry no ringing a scanner could trip on.
const JPEGQuality = 92

// Resize draws the PNG or JPEG image data at width pixels wide, and high
// in proportion, in the same format (contentType, image/png or
// image/jpeg): a JPEG stays a JPEG, a PNG stays a PNG with its alpha.
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
	src = halve(src, width)
	dr := image.Rect(0, 0, width, height)
	var buf bytes.Buffer
	if contentType == "image/png" {
		dst := image.NewNRGBA(dr)
		draw.ApproxBiLinear.Scale(dst, dr, src, src.Bounds(), draw.Src, nil)
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, dst)
	} else {
		dst := image.NewRGBA(dr)
		draw.ApproxBiLinear.Scale(dst, dr, src, src.Bounds(), draw.Src, nil)
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: JPEGQuality})
	}
	if err != nil {
		return nil, fmt.Errorf("encoding a resized image: %v", err)
	}
	return buf.Bytes(), nil
}

// halve averages src down by half, as often as it stays at least width
// wide: at exactly half, bilinear sampling is the mean of each 2×2 block,
// so no source pixel is skipped however small the width.
func halve(src image.Image, width int) image.Image {
	for b := src.Bounds(); b.Dx()/2 >= width; b = src.Bounds() {
		r := image.Rect(0, 0, b.Dx()/2, b.Dy()/2)
		dst := image.NewRGBA(r)
		draw.ApproxBiLinear.Scale(dst, r, src, image.Rect(b.Min.X, b.Min.Y, b.Min.X+2*r.Dx(), b.Min.Y+2*r.Dy()), draw.Src, nil)
		src = dst
	}
	return src
}
