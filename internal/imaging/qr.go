package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"github.com/boombuler/barcode/qr"
)

// quietZone is the white border around a drawn code, in modules: the four
// the QR standard asks for, without which scanners may not find the code.
const quietZone = 4

// codePalette draws codes black on white, one bit a pixel.
var codePalette = color.Palette{color.White, color.Black}

// DrawQR encodes content as a QR code (error correction M, as WeChat's
// own images of official-account codes) in a PNG width pixels square:
// whole pixels per module, so every module edge is sharp, centred in at
// least the quiet zone, one bit a pixel.
func DrawQR(content string, width int) ([]byte, error) {
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("encoding the code's url as a qr code: %v", err)
	}
	n := code.Bounds().Dx()
	module := width / (n + 2*quietZone)
	if module < 1 {
		return nil, fmt.Errorf("a qr code of %d modules does not fit in %d pixels", n, width)
	}
	img := image.NewPaletted(image.Rect(0, 0, width, width), codePalette)
	off := (width - n*module) / 2
	row := make([]uint8, width)
	for y := range n {
		clear(row)
		for x := range n {
			if r, _, _, _ := code.At(x, y).RGBA(); r == 0 {
				for i := range module {
					row[off+x*module+i] = 1
				}
			}
		}
		for i := range module {
			copy(img.Pix[(off+y*module+i)*img.Stride:], row)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encoding a drawn code: %v", err)
	}
	return buf.Bytes(), nil
}
