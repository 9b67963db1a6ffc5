package imaging

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
)

// pngOf is a PNG of the given chunks, each given as type and data.
func pngOf(chunks ...string) []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	for i := 0; i < len(chunks); i += 2 {
		b = binary.BigEndian.AppendUint32(b, uint32(len(chunks[i+1])))
		body := chunks[i] + chunks[i+1]
		b = append(b, body...)
		b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE([]byte(body)))
	}
	return b
}

// ihdr is the header of an 8-bit RGBA PNG of w×h pixels.
func ihdr(w, h uint32) string {
	b := binary.BigEndian.AppendUint32(nil, w)
	b = binary.BigEndian.AppendUint32(b, h)
	return string(append(b, 8, 6, 0, 0, 0))
}

func encodeJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheck(t *testing.T) {
	t.Parallel()
	jpg := master("pages/item/item?id=42", color.NRGBA{R: 0x1a, G: 0x1a, B: 0x1a, A: 0xff}, false)
	pngImg := master("pages/item/item?id=42", color.NRGBA{A: 0xff}, true)
	drawn, err := DrawQR("http://weixin.qq.com/q/02AbCdEfGhIjKlMnOpQrSt", 1280, LevelM)
	if err != nil {
		t.Fatal(err)
	}
	// A JPEG's SOF0 declaring 65500×65500 pixels.
	bomb := encodeJPEG(t, 16, 16)
	sof := bytes.Index(bomb, []byte{0xff, 0xc0})
	binary.BigEndian.PutUint16(bomb[sof+5:], 65500)
	binary.BigEndian.PutUint16(bomb[sof+7:], 65500)
	var gifImg bytes.Buffer
	if err := gif.Encode(&gifImg, image.NewPaletted(image.Rect(0, 0, 8, 8), color.Palette{color.White}), nil); err != nil {
		t.Fatal(err)
	}
	var wide bytes.Buffer
	if err := png.Encode(&wide, image.NewNRGBA(image.Rect(0, 0, 1281, 1281))); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		data []byte
		want string // the content type, or a part of the error
	}{
		{"jpeg", jpg, "image/jpeg"},
		{"transparent png", pngImg, "image/png"},
		{"drawn one-bit png", drawn, "image/png"},
		{"grey jpeg", encodeJPEG(t, 1280, 1280), "image/jpeg"},
		{"nearly square", encodeJPEG(t, 1000, 1200), "image/jpeg"},
		{"empty", nil, "not an image"},
		{"text", []byte(`{"errcode":40001}`), "not an image"},
		{"jpeg magic only", []byte{0xff, 0xd8, 0xff, 0xd9}, "not an image"},
		{"gif", gifImg.Bytes(), "a gif image"},
		{"truncated jpeg", jpg[:len(jpg)/2], "does not decode"},
		{"truncated jpeg, end marker added", append(jpg[:len(jpg)/2:len(jpg)/2], 0xff, 0xd9), "does not decode"},
		{"jpeg without its end marker", jpg[:len(jpg)-2], "does not decode"},
		{"jpeg and trailing bytes", append(jpg[:len(jpg):len(jpg)], "garbage"...), "7 bytes after the end of a jpeg image"},
		{"jpeg, trailing bytes and an end marker", append(jpg[:len(jpg):len(jpg)], 0, 1, 2, 0xff, 0xd9), "5 bytes after the end of a jpeg image"},
		{"truncated png", pngImg[:len(pngImg)-20], "does not decode"},
		{"png without IEND", pngImg[:len(pngImg)-12], "does not decode"},
		{"png and trailing bytes", append(pngImg[:len(pngImg):len(pngImg)], "garbage"...), "7 bytes after the end of a png image"},
		{"png declaring 100000×100000", pngOf("IHDR", ihdr(100000, 100000), "IEND", ""), "100000 pixels wide, more than 1280"},
		{"jpeg declaring 65500×65500", bomb, "65500 pixels wide, more than 1280"},
		{"png declaring 1280×100000", pngOf("IHDR", ihdr(1280, 100000), "IEND", ""), "not square or nearly"},
		{"too wide", wide.Bytes(), "1281 pixels wide"},
		{"not square", encodeJPEG(t, 1280, 640), "1280x640 pixels, not square"},
		{"png without pixels", pngOf("IHDR", ihdr(64, 64), "IEND", ""), "does not decode"},
	}
	for _, tt := range tests {
		got, err := Check(tt.data, 1280)
		switch {
		case strings.HasPrefix(tt.want, "image/"):
			if got != tt.want || err != nil {
				t.Errorf("%s: %q, %v; want %s", tt.name, got, err, tt.want)
			}
		case err == nil || got != "":
			t.Errorf("%s: %q, %v; want an error with %q", tt.name, got, err, tt.want)
		case !strings.Contains(err.Error(), tt.want):
			t.Errorf("%s: error %q, want one with %q", tt.name, err, tt.want)
		}
	}
}
