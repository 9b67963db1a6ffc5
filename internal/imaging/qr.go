package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strconv"

	"github.com/boombuler/barcode/qr"
)

// quietZone is the white border around a drawn code, in modules: the four
// the QR standard asks for, without which scanners may not find the code.
const quietZone = 4

// codePalette draws codes black on white, one bit a pixel.
var codePalette = color.Palette{color.White, color.Black}

// Level is a QR code's error correction. The zero Level is LevelM,
// WeChat's own for official accounts' codes.
type Level int

// The error correction levels: about 15, 7, 25 and 30% of the code may
// be lost and still scan.
const (
	LevelM Level = iota
	LevelL
	LevelQ
	LevelH
)

// ParseLevel reads L, M, Q or H.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "L":
		return LevelL, nil
	case "M":
		return LevelM, nil
	case "Q":
		return LevelQ, nil
	case "H":
		return LevelH, nil
	}
	return 0, fmt.Errorf("level must be L, M, Q or H, not %q", s)
}

// String is the level's letter.
func (l Level) String() string { return string("MLQH"[l]) }

var qrLevels = [...]qr.ErrorCorrectionLevel{LevelM: qr.M, LevelL: qr.L, LevelQ: qr.Q, LevelH: qr.H}

// modules encodes content and returns the code's dark modules, n by n,
// row by row.
func modules(content string, level Level) (dark []bool, n int, err error) {
	if level < LevelM || level > LevelH {
		return nil, 0, fmt.Errorf("unknown error correction level %d", level)
	}
	code, err := qr.Encode(content, qrLevels[level], qr.Auto)
	if err != nil {
		return nil, 0, fmt.Errorf("encoding a url as a qr code: %v", err)
	}
	n = code.Bounds().Dx()
	dark = make([]bool, n*n)
	for y := range n {
		for x := range n {
			r, _, _, _ := code.At(x, y).RGBA()
			dark[y*n+x] = r == 0
		}
	}
	return dark, n, nil
}

// DrawQR encodes content as a QR code in a PNG width pixels square, one
// bit a pixel, centred in at least the quiet zone. Every module gets the
// same whole number of pixels: no grey, every edge sharp, and a grid
// scanners read. (Filling the image instead, modules of one or two
// pixels, defeats scanners' sampling.) The largest code, 177 modules and
// the quiet zone, fits in the 280 pixels of the narrowest width served.
func DrawQR(content string, width int, level Level) ([]byte, error) {
	dark, n, err := modules(content, level)
	if err != nil {
		return nil, err
	}
	span := n + 2*quietZone
	if span > width {
		return nil, fmt.Errorf("a qr code of %d modules does not fit in %d pixels", n, width)
	}
	// at maps a pixel to its module in the code, or -1 in the white
	// around it.
	module := width / span
	off := (width - n*module) / 2
	at := make([]int, width)
	for p := range at {
		at[p] = -1
		if p >= off && p < off+n*module {
			at[p] = (p - off) / module
		}
	}
	img := image.NewPaletted(image.Rect(0, 0, width, width), codePalette)
	for y := range width {
		my := at[y]
		if my < 0 {
			continue
		}
		row := img.Pix[y*img.Stride : y*img.Stride+width]
		for x, mx := range at {
			if mx >= 0 && dark[my*n+mx] {
				row[x] = 1
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encoding a drawn code: %v", err)
	}
	return buf.Bytes(), nil
}

// DrawQRSVG encodes content as a QR code in an SVG width pixels square:
// a white square and one path of the dark modules, a rectangle for each
// run of them in a row, in a viewBox counted in modules with the quiet
// zone. Nothing in it runs or loads anything.
func DrawQRSVG(content string, width int, level Level) ([]byte, error) {
	dark, n, err := modules(content, level)
	if err != nil {
		return nil, err
	}
	span := strconv.Itoa(n + 2*quietZone)
	w := strconv.Itoa(width)
	b := make([]byte, 0, 256+n*n)
	b = append(b, `<svg xmlns="http://www.w3.org/2000/svg" width="`+w+`" height="`+w+
		`" viewBox="0 0 `+span+` `+span+`" shape-rendering="crispEdges">`+
		`<path fill="#fff" d="M0 0h`+span+`v`+span+`H0z"/><path fill="#000" d="`...)
	for y := range n {
		for x := 0; x < n; {
			if !dark[y*n+x] {
				x++
				continue
			}
			run := 1
			for x+run < n && dark[y*n+x+run] {
				run++
			}
			b = append(b, 'M')
			b = strconv.AppendInt(b, int64(x+quietZone), 10)
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(y+quietZone), 10)
			b = append(b, 'h')
			b = strconv.AppendInt(b, int64(run), 10)
			b = append(b, "v1h-"...)
			b = strconv.AppendInt(b, int64(run), 10)
			b = append(b, 'z')
			x += run
		}
	}
	return append(b, `"/></svg>`...), nil
}
