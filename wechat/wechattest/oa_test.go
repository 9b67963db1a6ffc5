package wechattest_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

var oaURLRE = regexp.MustCompile(`^http://weixin\.qq\.com/q/02[0-9A-Za-z]{20}$`)

type oaReply struct {
	Ticket        string `json:"ticket"`
	ExpireSeconds *int64 `json:"expire_seconds"`
	URL           string `json:"url"`
}

func oaBody(kind, scene string, expire int64) string {
	exp := ""
	if expire != 0 {
		exp = fmt.Sprintf(`"expire_seconds":%d,`, expire)
	}
	return fmt.Sprintf(`{%s"action_name":%q,"action_info":{"scene":{"scene_str":%q}}}`, exp, kind, scene)
}

// oa calls qrcode.create and decodes a code, failing on anything else.
func oa(t *testing.T, s *wechattest.Server, tok, body string) oaReply {
	t.Helper()
	a := code(t, s, wechattest.PathOACode, tok, body)
	var r oaReply
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json; encoding=utf-8" ||
		json.Unmarshal(a.body, &r) != nil || r.Ticket == "" || !oaURLRE.MatchString(r.URL) {
		t.Fatalf("%d %q %s: want a ticket and a weixin.qq.com/q url", a.status, a.header.Get("Content-Type"), a.body)
	}
	if _, err := base64.StdEncoding.DecodeString(r.Ticket); err != nil {
		t.Errorf("ticket %q is not base64", r.Ticket)
	}
	return r
}

func TestOACodes(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)

	tmp := oa(t, s, tok, oaBody("QR_STR_SCENE", "order=42", 3600))
	if tmp.ExpireSeconds == nil || *tmp.ExpireSeconds != 3600 {
		t.Errorf("expire_seconds %v, want 3600", tmp.ExpireSeconds)
	}
	again := oa(t, s, tok, oaBody("QR_STR_SCENE", "order=42", 7200))
	if again.URL != tmp.URL || again.Ticket != tmp.Ticket || *again.ExpireSeconds != 7200 {
		t.Errorf("asked again while live: %+v, want the same url and ticket as %+v, 7200 s", again, tmp)
	}
	if got := s.OAURL("order=42", false); got != tmp.URL {
		t.Errorf("OAURL = %q, want %q", got, tmp.URL)
	}

	perm := oa(t, s, tok, oaBody("QR_LIMIT_STR_SCENE", "order=42", 0))
	if perm.ExpireSeconds != nil || perm.URL == tmp.URL {
		t.Errorf("permanent %+v: want no expire_seconds and a url of its own", perm)
	}
	if s.OAURL("order=42", true) != perm.URL || s.OAURL("other", true) != "" {
		t.Error("OAURL does not tell the permanent code apart")
	}
	if a := code(t, s, wechattest.PathOACode, tok, oaBody("QR_LIMIT_STR_SCENE", "order=42", 0)); !strings.Contains(string(a.body), perm.URL) ||
		strings.Contains(string(a.body), "expire_seconds") {
		t.Errorf("permanent code asked again: %s", a.body)
	}

	if r := oa(t, s, tok, oaBody("QR_STR_SCENE", "clamped", 99999999)); *r.ExpireSeconds != 2592000 {
		t.Errorf("expire_seconds %d, want WeChat's clamp to 2592000", *r.ExpireSeconds)
	}
	if r := oa(t, s, tok, oaBody("QR_STR_SCENE", "default", 0)); *r.ExpireSeconds != 60 {
		t.Errorf("expire_seconds %d, want WeChat's default of 60", *r.ExpireSeconds)
	}
	if r := oa(t, s, tok, oaBody("QR_STR_SCENE", strings.Repeat("码", 64), 60)); r.URL == "" {
		t.Error("a 64-character scene is valid")
	}

	for _, tc := range []struct {
		body string
		want int
	}{
		{oaBody("QR_SCENE", "a", 60), 40052},
		{oaBody("", "a", 60), 40052},
		{oaBody("QR_STR_SCENE", "", 60), 40053},
		{oaBody("QR_LIMIT_STR_SCENE", strings.Repeat("a", 65), 0), 40053},
		{`{"action_name":"QR_STR_SCENE"}`, 40053},
		{`{"action_name":"QR_STR_SCENE","action_info":"x"}`, 47001},
		{`not json`, 47001},
	} {
		wantErr(t, code(t, s, wechattest.PathOACode, tok, tc.body), tc.want)
	}
	wantErr(t, code(t, s, wechattest.PathOACode, "", oaBody("QR_STR_SCENE", "a", 60)), 41001)
	wantErr(t, code(t, s, wechattest.PathOACode, "bogus", oaBody("QR_STR_SCENE", "a", 60)), 40001)
	wantErr(t, do(t, http.MethodGet, s.URL+wechattest.PathOACode+"?access_token="+tok, ""), 43002)

	s.Inject(wechattest.PathOACode, wechattest.Fault{ErrCode: -1}, 1)
	wantErr(t, code(t, s, wechattest.PathOACode, tok, oaBody("QR_STR_SCENE", "a", 60)), -1)
	if n := s.Calls(wechattest.PathOACode); n != 18 {
		t.Errorf("Calls(PathOACode) = %d, want 18", n)
	}
	if s.CodeCalls() != 18 {
		t.Errorf("CodeCalls() = %d, want qrcode.create's 18", s.CodeCalls())
	}
}

func TestOAPermanentLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetPermanentLimit(2)
	tok, _ := stable(t, s, false)
	a := oa(t, s, tok, oaBody("QR_LIMIT_STR_SCENE", "a", 0))
	oa(t, s, tok, oaBody("QR_LIMIT_STR_SCENE", "b", 0))
	wantErr(t, code(t, s, wechattest.PathOACode, tok, oaBody("QR_LIMIT_STR_SCENE", "c", 0)), 45029)
	if again := oa(t, s, tok, oaBody("QR_LIMIT_STR_SCENE", "a", 0)); again.URL != a.URL {
		t.Error("an existing permanent code is refused or changed at the limit")
	}
	oa(t, s, tok, oaBody("QR_STR_SCENE", "c", 60)) // temporary codes are not counted
	if n := s.PermanentCodes(); n != 2 {
		t.Errorf("PermanentCodes() = %d, want 2", n)
	}
}

func TestOATemporaryExpires(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tok, _ := stable(t, s, false)
	first := oa(t, s, tok, oaBody("QR_STR_SCENE", "short", 1))
	time.Sleep(1100 * time.Millisecond)
	if got := s.OAURL("short", false); got != "" {
		t.Errorf("OAURL = %q after expiry, want none", got)
	}
	if next := oa(t, s, tok, oaBody("QR_STR_SCENE", "short", 60)); next.URL == first.URL {
		t.Error("an expired temporary code's url was issued again")
	}
}

func TestCentralToken(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	if s.CentralTokenURL() != s.URL+wechattest.PathCentralToken {
		t.Errorf("CentralTokenURL() = %q", s.CentralTokenURL())
	}
	central := func(header ...string) answer {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.CentralTokenURL()+"?key=anything", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return answer{resp.StatusCode, resp.Header, body}
	}

	tok, ttl := tokenOf(t, central())
	if ttl != 7200 {
		t.Errorf("expires_in %d, want 7200", ttl)
	}
	if st, _ := stable(t, s, false); st != tok {
		t.Error("the central server hands out another token than the stable endpoint")
	}
	if again, _ := tokenOf(t, central()); again != tok {
		t.Error("the central server changed a live token")
	}
	wantImage(t, code(t, s, wechattest.PathQRCode, tok, `{"path":"p"}`), "jpeg", 430)

	s.InvalidateTokens()
	next, _ := tokenOf(t, central())
	if next == tok {
		t.Error("the central server handed out an invalidated token")
	}
	wantImage(t, code(t, s, wechattest.PathQRCode, next, `{"path":"p"}`), "jpeg", 430)

	s.SetCentralAuth("Authorization", "Bearer k1")
	if a := central(); a.status != http.StatusUnauthorized {
		t.Errorf("no auth header: status %d, want 401", a.status)
	}
	if a := central("Authorization", "Bearer nope"); a.status != http.StatusUnauthorized {
		t.Errorf("wrong auth header: status %d, want 401", a.status)
	}
	tokenOf(t, central("Authorization", "Bearer k1"))
	s.SetCentralAuth("", "")
	tokenOf(t, central())

	if a := do(t, http.MethodPost, s.CentralTokenURL(), "{}"); a.status != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", a.status)
	}
	s.Inject(wechattest.PathCentralToken, wechattest.Fault{Status: 502}, 1)
	if a := central(); a.status != http.StatusBadGateway {
		t.Errorf("injected fault: status %d, want 502", a.status)
	}
	if n := s.Calls(wechattest.PathCentralToken); n != 9 {
		t.Errorf("Calls(PathCentralToken) = %d, want 9", n)
	}
	if n := s.TokenCalls(); n != 1 {
		t.Errorf("TokenCalls() = %d, want only the stable call", n)
	}
}

func TestNoTokenMode(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	wantErr(t, code(t, s, wechattest.PathQRCode, "", `{"path":"p"}`), 41001)
	s.SetNoToken(true)
	wantImage(t, code(t, s, wechattest.PathQRCode, "", `{"path":"p"}`), "jpeg", 430)
	wantImage(t, code(t, s, wechattest.PathUnlimited, "", `{"scene":"s"}`), "jpeg", 430)
	oa(t, s, "", oaBody("QR_STR_SCENE", "s", 60))
	wantErr(t, code(t, s, wechattest.PathWxaCode, "bogus", `{"path":"p"}`), 40001)
	s.SetNoToken(false)
	wantErr(t, code(t, s, wechattest.PathWxaCode, "", `{"path":"p"}`), 41001)
	if s.TokenCalls() != 0 {
		t.Errorf("TokenCalls() = %d, want 0", s.TokenCalls())
	}
}
