// Package imaging checks, resizes and draws the images of codes: pure
// functions from bytes to bytes, with no knowledge of the handler, its
// caches or Caddy.
package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
)

// maxAspect bounds how far from square an image may be: neither side
// more than 125% of the other. The codes WeChat draws are square or
// nearly; a long strip is no code.
const maxAspect = 125

// Check returns image/png or image/jpeg for data that is one whole image
// of dimensions WeChat can send: at most maxWidth wide, square or nearly.
// It reads the dimensions before decoding, so a decompression bomb costs
// no more than its header; then it decodes the whole image, so a cut-off
// or corrupt one is refused, as is anything after its end.
func Check(data []byte, maxWidth int) (contentType string, err error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("not an image: %v", err)
	}
	switch {
	case format != "png" && format != "jpeg":
		return "", fmt.Errorf("a %s image, want png or jpeg", format)
	case cfg.Width < 1 || cfg.Height < 1:
		return "", fmt.Errorf("an empty %s image", format)
	case cfg.Width > maxWidth:
		return "", fmt.Errorf("a %s image %d pixels wide, more than %d", format, cfg.Width, maxWidth)
	case cfg.Height > cfg.Width*maxAspect/100 || cfg.Width > cfg.Height*maxAspect/100:
		return "", fmt.Errorf("a %s image of %dx%d pixels, not square or nearly", format, cfg.Width, cfg.Height)
	}
	r := bytes.NewReader(data)
	if format == "png" {
		// The PNG decoder reads chunk by chunk, through IEND and no
		// further, so what it leaves is what follows the image.
		if _, err := png.Decode(r); err != nil {
			return "", fmt.Errorf("a png image that does not decode: %v", err)
		}
		if r.Len() > 0 {
			return "", fmt.Errorf("%d bytes after the end of a png image", r.Len())
		}
		return "image/png", nil
	}
	// The JPEG decoder reads ahead and stops at the end marker; the
	// marker walk finds where that marker is.
	if _, err := jpeg.Decode(r); err != nil {
		return "", fmt.Errorf("a jpeg image that does not decode: %v", err)
	}
	if err := jpegEnd(data); err != nil {
		return "", err
	}
	return "image/jpeg", nil
}

// jpegEnd walks the markers of a decodable JPEG and reports an error
// unless its end-of-image marker is its last two bytes.
func jpegEnd(data []byte) error {
	i := 2 // after SOI, which DecodeConfig checked
	for {
		for i < len(data) && data[i] == 0xff && i+1 < len(data) && data[i+1] == 0xff {
			i++ // fill bytes before a marker
		}
		if i+2 > len(data) || data[i] != 0xff {
			return errors.New("a jpeg image without its end marker")
		}
		marker := data[i+1]
		i += 2
		switch {
		case marker == 0xd9: // EOI
			if n := len(data) - i; n > 0 {
				return fmt.Errorf("%d bytes after the end of a jpeg image", n)
			}
			return nil
		case marker == 0x01 || marker >= 0xd0 && marker <= 0xd7:
			continue // TEM and RSTn stand alone
		}
		if i+2 > len(data) {
			return errors.New("a jpeg image cut off in a segment")
		}
		i += int(data[i])<<8 | int(data[i+1])
		if marker == 0xda {
			// Entropy-coded data runs to the next marker that is not a
			// stuffed byte or a restart.
			for i+1 < len(data) && (data[i] != 0xff || data[i+1] == 0 || data[i+1] >= 0xd0 && data[i+1] <= 0xd7) {
				i++
			}
		}
	}
}
