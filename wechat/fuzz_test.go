package wechat

import (
	"errors"
	"testing"
	"time"
)

func FuzzParseCodeReply(f *testing.F) {
	f.Add([]byte(`{"errcode":40159,"errmsg":"invalid length for path rid: 1-2-3"}`))
	f.Add([]byte(`{"errcode":0,"errmsg":"ok"}`))
	f.Add([]byte(`{"errcode":"1"}`))
	f.Add([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x00IEND\xae\x42\x60\x82"))
	f.Add([]byte("\x89PNG\r\n\x1a\n\xff\xff\xff\xffIHDR"))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0xFF, 0xD9})
	f.Add([]byte{0xFF, 0xD8, 0xFF})
	f.Add([]byte("<html>502</html>"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := parseCodeReply(data)
		var werr *Error
		switch {
		case err == nil:
			if img.ContentType == "" || ImageType(data) != img.ContentType || len(img.Data) != len(data) {
				t.Fatalf("image %q from bytes that are not one", img.ContentType)
			}
		case errors.As(err, &werr):
			if werr.Code == 0 || string(werr.Body) != string(data) {
				t.Fatalf("error with code 0 or another body: %v", werr)
			}
		case !errors.Is(err, ErrBadReply):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzTokenReply(f *testing.F) {
	f.Add([]byte(`{"access_token":"ACCESS","expires_in":7200}`))
	f.Add([]byte(`{"errcode":40125,"errmsg":"invalid appsecret"}`))
	f.Add([]byte(`{"access_token":5,"expires_in":"7200"}`))
	f.Add([]byte(`{"access_token":"x","expires_in":-1}`))
	f.Add([]byte(`{"access_token":"x","expires_in":9223372036854775807}`))
	f.Add([]byte(`null`))
	start := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseTokenReply(data, start)
		if err == nil && (tok.AccessToken == "" || !tok.Expiry.After(start)) {
			t.Fatalf("accepted a token that is empty or already expired: %+v", *tok)
		}
		if err != nil && tok != nil {
			t.Fatal("a token with an error")
		}
	})
}

func FuzzOAReply(f *testing.F) {
	f.Add([]byte(`{"ticket":"gQ==","expire_seconds":60,"url":"http://weixin.qq.com/q/02abc"}`), false)
	f.Add([]byte(`{"ticket":"gQ==","url":"http://weixin.qq.com/q/02abc"}`), true)
	f.Add([]byte(`{"ticket":"gQ==","expire_seconds":-5,"url":"u"}`), false)
	f.Add([]byte(`{"ticket":"gQ==","expire_seconds":9223372036854775807,"url":"u"}`), false)
	f.Add([]byte(`{"errcode":40053,"errmsg":"invalid action info rid: 1-2-3"}`), false)
	f.Add([]byte(`{"ticket":1}`), true)
	f.Fuzz(func(t *testing.T, data []byte, permanent bool) {
		code, err := parseOAReply(data, permanent)
		var werr *Error
		switch {
		case err == nil:
			if code.Ticket == "" || code.URL == "" || (permanent != (code.ExpireSeconds == 0)) ||
				code.ExpireSeconds < 0 || code.ExpireSeconds > int64(MaxOAExpire/time.Second) {
				t.Fatalf("accepted %+v (permanent %t)", *code, permanent)
			}
		case errors.As(err, &werr):
			if werr.Code == 0 || string(werr.Body) != string(data) {
				t.Fatalf("error with code 0 or another body: %v", werr)
			}
		case !errors.Is(err, ErrBadReply):
			t.Fatalf("unexpected error %v", err)
		}
	})
}
