package wechat

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	f := false
	tests := []struct {
		name string
		req  interface{ Validate() error }
		code int // 0: valid
	}{
		{"qrcode ok", &QRCodeRequest{Path: "pages/item/item?id=42"}, 0},
		{"qrcode width bounds", &QRCodeRequest{Path: "a", Width: 1280}, 0},
		{"qrcode empty path", &QRCodeRequest{}, CodePathLength},
		{"qrcode 129 bytes", &QRCodeRequest{Path: strings.Repeat("a", 129)}, CodePathLength},
		{"qrcode 128 bytes", &QRCodeRequest{Path: strings.Repeat("a", 128)}, 0},
		{"qrcode scancode_time", &QRCodeRequest{Path: "p?scancode_time=1"}, CodeScancodeTime},
		{"qrcode narrow", &QRCodeRequest{Path: "a", Width: 279}, CodeInvalidArgs},
		{"qrcode wide", &QRCodeRequest{Path: "a", Width: 1281}, CodeInvalidArgs},
		{"qrcode control byte", &QRCodeRequest{Path: "a\x00b"}, CodePathLength},
		{"qrcode invalid utf8", &QRCodeRequest{Path: "a\xffb"}, CodePathLength},
		{"qrcode dotdot", &QRCodeRequest{Path: "pages/../admin"}, CodePathLength},
		{"qrcode dotdot in query", &QRCodeRequest{Path: "pages/a/a?next=../b"}, 0},
		{"wxacode 1024 bytes", &WxaCodeRequest{Path: strings.Repeat("a", 1024)}, 0},
		{"wxacode 1025 bytes", &WxaCodeRequest{Path: strings.Repeat("a", 1025)}, CodePathLength},
		{"wxacode colour", &WxaCodeRequest{Path: "a", LineColor: &Color{R: 256}}, CodeInvalidArgs},
		{"wxacode env", &WxaCodeRequest{Path: "a", EnvVersion: "beta"}, CodeInvalidArgs},
		{"wxacode trial", &WxaCodeRequest{Path: "a", EnvVersion: EnvTrial}, 0},
		{"unlimited ok", &UnlimitedRequest{Scene: "id=42&from=poster", Page: "pages/item/item", CheckPath: &f}, 0},
		{"unlimited all chars", &UnlimitedRequest{Scene: "09AZaz!#$&'()*+,/:;=?@-._~"}, 0},
		{"unlimited empty scene", &UnlimitedRequest{}, CodeSceneLength},
		{"unlimited 33 chars", &UnlimitedRequest{Scene: strings.Repeat("a", 33)}, CodeSceneLength},
		{"unlimited space", &UnlimitedRequest{Scene: "a b"}, CodeSceneChars},
		{"unlimited percent", &UnlimitedRequest{Scene: "a%20"}, CodeSceneChars},
		{"unlimited leading slash", &UnlimitedRequest{Scene: "a", Page: "/pages/index/index"}, CodeInvalidPage},
		{"unlimited page query", &UnlimitedRequest{Scene: "a", Page: "pages/index/index?x=1"}, CodeInvalidPage},
		{"unlimited page dotdot", &UnlimitedRequest{Scene: "a", Page: "pages/../x"}, CodeInvalidPage},
		{"unlimited scene dotdot", &UnlimitedRequest{Scene: "../../etc"}, 0},
		{"unlimited width", &UnlimitedRequest{Scene: "a", Width: 100}, CodeInvalidArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var werr *Error
			if !errors.As(err, &werr) || werr.Code != tt.code || werr.Body != nil {
				t.Fatalf("want local errcode %d, got %v", tt.code, err)
			}
		})
	}
}

func TestImageType(t *testing.T) {
	t.Parallel()
	png := []byte("\x89PNG\r\n\x1a\n" +
		"\x00\x00\x00\x00IHDR\x00\x00\x00\x00" + // an empty chunk is enough for the walk
		"\x00\x00\x00\x00IEND\xae\x42\x60\x82")
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9}
	tests := []struct {
		data []byte
		want string
	}{
		{png, "image/png"},
		{png[:len(png)-1], ""},
		{png[:20], ""},
		{jpeg, "image/jpeg"},
		{jpeg[:len(jpeg)-1], ""},
		{[]byte(`{"errcode":40001}`), ""},
		{nil, ""},
		{[]byte("\x89PNG\r\n\x1a\n\xff\xff\xff\xffIHDR"), ""},
	}
	for i, tt := range tests {
		if got := ImageType(tt.data); got != tt.want {
			t.Errorf("case %d: ImageType = %q, want %q", i, got, tt.want)
		}
	}
}
