package imaging

import (
	"bytes"
	"image"
	"image/color"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// scan decodes the QR code in an encoded image; where gozxing's
// finder-pattern detector misses a drawn code, it reads the image as the
// pure code it is, which still checks the format and error correction.
func scan(t testing.TB, data []byte) string {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decoding an image to scan it: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		res, err = qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	}
	if err != nil {
		return ""
	}
	return res.GetText()
}

// master is a code as the fake WeChat draws it at 1280 pixels: a JPEG,
// or a transparent PNG when hyaline.
func master(content string, fg color.NRGBA, hyaline bool) []byte {
	return wechattest.RenderCode(content, 1280, fg, hyaline)
}
