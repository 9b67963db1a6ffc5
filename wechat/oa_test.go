package wechat_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

func TestOACodeWireShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		req  wechat.OACodeRequest
		want string
	}{
		{wechat.OACodeRequest{Scene: "order=42"},
			`{"expire_seconds":2592000,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"order=42"}}}`},
		{wechat.OACodeRequest{Scene: "order=42", Expire: time.Hour},
			`{"expire_seconds":3600,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"order=42"}}}`},
		{wechat.OACodeRequest{Scene: "会员/7", Permanent: true},
			`{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"会员/7"}}}`},
		{wechat.OACodeRequest{Scene: "a=1&b=<2>", Permanent: true},
			`{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"a=1&b=<2>"}}}`},
	} {
		fake, c := newClient(t)
		if _, err := c.CreateOACode(context.Background(), &tc.req); err != nil {
			t.Fatal(err)
		}
		var got *wechattest.Request
		for _, r := range fake.Requests() {
			if r.Path == wechattest.PathOACode {
				got = &r
			}
		}
		if got == nil || got.Method != "POST" || got.Query.Get("access_token") == "" || len(got.Query) != 1 {
			t.Fatalf("want a POST with only access_token in the query, got %+v", got)
		}
		if string(got.Body) != tc.want {
			t.Errorf("body %s, want %s", got.Body, tc.want)
		}
	}
}

func TestCreateOACode(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	obs := &recorder{}
	c.Observer = obs
	ctx := context.Background()
	before := time.Now()
	tmp, err := c.CreateOACode(ctx, &wechat.OACodeRequest{Scene: "s1", Expire: time.Hour})
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if tmp.Ticket == "" || tmp.URL != fake.OAURL("s1", false) || tmp.ExpireSeconds != 3600 {
		t.Errorf("temporary code %+v, want a ticket, the fake's url and 3600 s", tmp)
	}
	if tmp.Expiry.Before(before.Add(time.Hour)) || tmp.Expiry.After(after.Add(time.Hour)) {
		t.Errorf("expiry %v, want an hour from the call", tmp.Expiry)
	}
	perm, err := c.CreateOACode(ctx, &wechat.OACodeRequest{Scene: "s1", Permanent: true})
	if err != nil {
		t.Fatal(err)
	}
	if perm.URL != fake.OAURL("s1", true) || perm.URL == tmp.URL || perm.ExpireSeconds != 0 || !perm.Expiry.IsZero() {
		t.Errorf("permanent code %+v, want the fake's permanent url and no expiry", perm)
	}
	if got := strings.Join(obs.list(), ","); got != "qrcode_create ok,qrcode_create ok" {
		t.Errorf("observed %q", got)
	}

	fake.SetPermanentLimit(1)
	_, err = c.CreateOACode(ctx, &wechat.OACodeRequest{Scene: "s2", Permanent: true})
	var werr *wechat.Error
	if !errors.As(err, &werr) || werr.Code != wechat.CodeLifetimeLimit || len(werr.Body) == 0 {
		t.Errorf("want 45029 past the permanent limit, got %v", err)
	}
}

func TestOACodeReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault wechattest.Fault
		check func(*wechat.OACode, error) bool
	}{
		{"errcode", wechattest.Fault{ErrCode: wechat.CodeInvalidActionInfo},
			func(_ *wechat.OACode, err error) bool {
				var werr *wechat.Error
				return errors.As(err, &werr) && werr.Code == 40053 && strings.HasPrefix(string(werr.Body), `{"errcode":40053`)
			}},
		{"no expire_seconds", wechattest.Fault{Body: []byte(`{"ticket":"t","url":"http://weixin.qq.com/q/02x"}`)},
			func(_ *wechat.OACode, err error) bool { return errors.Is(err, wechat.ErrBadReply) }},
		{"no url", wechattest.Fault{Body: []byte(`{"ticket":"t","expire_seconds":60}`)},
			func(_ *wechat.OACode, err error) bool { return errors.Is(err, wechat.ErrBadReply) }},
		{"garbage", wechattest.Fault{Garbage: true},
			func(_ *wechat.OACode, err error) bool { return errors.Is(err, wechat.ErrBadReply) }},
		{"an image", wechattest.Fault{Body: []byte("\xff\xd8\xff\xe0 not json \xff\xd9")},
			func(_ *wechat.OACode, err error) bool { return errors.Is(err, wechat.ErrBadReply) }},
		{"wild expire_seconds", wechattest.Fault{Body: []byte(`{"ticket":"t","expire_seconds":99999999,"url":"http://weixin.qq.com/q/02x"}`)},
			func(code *wechat.OACode, err error) bool {
				return err == nil && code.ExpireSeconds == 2592000 && time.Until(code.Expiry) <= 30*24*time.Hour
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, c := newClient(t)
			fake.Inject(wechattest.PathOACode, tt.fault, 0)
			code, err := c.CreateOACode(context.Background(), &wechat.OACodeRequest{Scene: "s"})
			if !tt.check(code, err) {
				t.Fatalf("unexpected result %+v, %v", code, err)
			}
			if n := fake.Calls(wechattest.PathOACode); n != 1 {
				t.Errorf("%d calls, want 1", n)
			}
		})
	}
}

// qrcode.create follows the code APIs' rules: a refused token is replaced
// once, WeChat busy is retried.
func TestOACodeRetries(t *testing.T) {
	t.Parallel()
	fake, c := newClient(t)
	ctx := context.Background()
	req := &wechat.OACodeRequest{Scene: "s", Permanent: true}
	if _, err := c.CreateOACode(ctx, req); err != nil {
		t.Fatal(err)
	}
	fake.InvalidateTokens()
	if _, err := c.CreateOACode(ctx, req); err != nil {
		t.Fatalf("want success after one refresh, got %v", err)
	}
	fake.Inject(wechattest.PathOACode, wechattest.Fault{ErrCode: wechat.CodeBusy}, 2)
	if _, err := c.CreateOACode(ctx, req); err != nil {
		t.Fatalf("want success on the third try, got %v", err)
	}
	if fake.TokenCalls() != 2 || fake.Calls(wechattest.PathOACode) != 6 {
		t.Errorf("token calls %d, qrcode.create calls %d; want 2 and 6", fake.TokenCalls(), fake.Calls(wechattest.PathOACode))
	}
	if fake.PermanentCodes() != 1 {
		t.Errorf("%d permanent codes, want 1", fake.PermanentCodes())
	}
}

func TestOACodeValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		req  wechat.OACodeRequest
		code int // 0: valid
	}{
		{wechat.OACodeRequest{Scene: "a"}, 0},
		{wechat.OACodeRequest{Scene: strings.Repeat("码", 64), Expire: time.Minute}, 0},
		{wechat.OACodeRequest{Scene: "a", Expire: 30 * 24 * time.Hour}, 0},
		{wechat.OACodeRequest{Scene: "a", Permanent: true}, 0},
		{wechat.OACodeRequest{}, wechat.CodeInvalidActionInfo},
		{wechat.OACodeRequest{Scene: strings.Repeat("a", 65)}, wechat.CodeInvalidActionInfo},
		{wechat.OACodeRequest{Scene: "a\nb"}, wechat.CodeInvalidActionInfo},
		{wechat.OACodeRequest{Scene: "\xff"}, wechat.CodeInvalidActionInfo},
		{wechat.OACodeRequest{Scene: "a", Expire: 59 * time.Second}, wechat.CodeInvalidArgs},
		{wechat.OACodeRequest{Scene: "a", Expire: 30*24*time.Hour + time.Second}, wechat.CodeInvalidArgs},
		{wechat.OACodeRequest{Scene: "a", Expire: 90*time.Second + time.Millisecond}, wechat.CodeInvalidArgs},
		{wechat.OACodeRequest{Scene: "a", Expire: -time.Hour}, wechat.CodeInvalidArgs},
		{wechat.OACodeRequest{Scene: "a", Permanent: true, Expire: time.Hour}, wechat.CodeInvalidArgs},
	}
	fake, c := newClient(t)
	for _, tt := range tests {
		err := tt.req.Validate()
		var werr *wechat.Error
		switch {
		case tt.code == 0 && err != nil:
			t.Errorf("%+v: unexpected %v", tt.req, err)
		case tt.code != 0 && (!errors.As(err, &werr) || werr.Code != tt.code || werr.Body != nil):
			t.Errorf("%+v: got %v, want local errcode %d", tt.req, err, tt.code)
		}
		if tt.code != 0 {
			if _, err := c.CreateOACode(context.Background(), &tt.req); err == nil {
				t.Errorf("%+v: CreateOACode accepted it", tt.req)
			}
		}
	}
	if fake.CodeCalls() != 0 || fake.TokenCalls() != 0 {
		t.Errorf("%d code and %d token calls for invalid requests, want none", fake.CodeCalls(), fake.TokenCalls())
	}
}
