package wxqrcode_test

import (
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestSignedURLs(t *testing.T) {
	t.Setenv(signKeyEnv, signKey)
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "sign_key {env."+signKeyEnv+"} "+oldSignKey))
	// The width is not signed: every width is drawn from one code.
	canonical := func(path string) string {
		return url.Values{"api": {"qrcode"}, "appid": {testAppID}, "path": {path}}.Encode()
	}
	path := "pages/item/item?id=42"
	good := hmacHex(signKey, canonical(path))
	tests := []struct {
		name    string
		query   url.Values
		status  int
		errcode int
	}{
		{"good", url.Values{"path": {path}, "sig": {good}}, 200, 0},
		{"good, width spelled out", url.Values{"path": {path}, "width": {"430"}, "sig": {good}}, 200, 0},
		{"old key still accepted", url.Values{"path": {path}, "sig": {hmacHex(oldSignKey, canonical(path))}}, 200, 0},
		{"upper-case hex", url.Values{"path": {path}, "sig": {strings.ToUpper(good)}}, 200, 0},
		{"missing", url.Values{"path": {path}}, 403, 990411},
		{"empty", url.Values{"path": {path}, "sig": {""}}, 403, 990411},
		{"wrong key", url.Values{"path": {path}, "sig": {hmacHex("not-the-key-at-all", canonical(path))}}, 403, 990412},
		{"tampered path", url.Values{"path": {"pages/item/item?id=43"}, "sig": {good}}, 403, 990412},
		{"any width", url.Values{"path": {path}, "width": {"280"}, "sig": {good}}, 200, 0},
		{"truncated sig", url.Values{"path": {path}, "sig": {good[:40]}}, 403, 990412},
		{"not hex", url.Values{"path": {path}, "sig": {strings.Repeat("zz", 32)}}, 403, 990412},
		{"two sigs", url.Values{"path": {path}, "sig": {good, good}}, 403, 990412},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.CodeCalls()
			resp, body := s.get("/qr?" + tt.query.Encode())
			if tt.status == 200 {
				width, err := strconv.Atoi(tt.query.Get("width"))
				if err != nil {
					width = 430
				}
				assertImage(t, resp, body, "image/jpeg", width)
				return
			}
			assertError(t, resp, body, tt.status, tt.errcode)
			if fake.CodeCalls() != before {
				t.Error("a refused request made a call")
			}
		})
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

// The sign command's URLs are accepted by the handler.
func TestSignCommand(t *testing.T) {
	fake := newFake(t)
	t.Setenv(signKeyEnv, signKey)
	s := startSite(t, fake, "", qrBlock(fake, "sign_key {env."+signKeyEnv+"}")+
		wxBlock(fake, "/poster", "api unlimited\nsign_key {env."+signKeyEnv+"}"))
	for _, tc := range []struct{ api, uri, ctype string }{
		{"qrcode", "/qr?path=pages%2Findex%2Findex&width=300", "image/jpeg"},
		{"unlimited", "/poster?scene=a%3D1&page=pages/item/item", "image/jpeg"},
	} {
		cmd := exec.Command(builtCaddy(t), "wxqrcode", "sign", "--appid", testAppID, "--api", tc.api, "--key-env", signKeyEnv, s.url+tc.uri)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		signed := strings.TrimSpace(string(out))
		if !strings.Contains(signed, "sig=") || !strings.HasPrefix(signed, s.url) {
			t.Fatalf("sign printed %q", signed)
		}
		resp, body := s.get(strings.TrimPrefix(signed, s.url))
		if resp.StatusCode != 200 {
			t.Errorf("%s: signed URL got %d: %s", tc.api, resp.StatusCode, body)
		}
	}
	cmd := exec.Command(builtCaddy(t), "wxqrcode", "sign", "--appid", testAppID, "--key-env", signKeyEnv, s.url+"/qr?path=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "path must be 1 to 128 bytes") {
		t.Errorf("want the command to refuse a request WeChat would refuse, got %v: %s", err, out)
	}
}

// With sign_key, the signature is checked before anything else about the
// request: an unsigned request learns nothing of its inputs or of allow,
// and one that cannot be resolved at all is a bad signature.
func TestSignatureCheckedFirst(t *testing.T) {
	t.Setenv(signKeyEnv, signKey)
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "sign_key {env."+signKeyEnv+"}\nallow pages/*"))
	canonical := func(path string) string {
		return url.Values{"api": {"qrcode"}, "appid": {testAppID}, "path": {path}}.Encode()
	}
	bogus := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		query   string
		status  int
		errcode int
	}{
		{"unsigned, bad width", "path=pages/a&width=big", 403, 990411},
		{"unsigned, disallowed path", "path=admin/secret", 403, 990411},
		{"unsigned, no path", "", 403, 990411},
		{"unsigned, path twice", "path=pages/a&path=pages/b", 403, 990411},
		{"unsigned, malformed query", "path=%zz", 403, 990411},
		{"bad sig, bad width", "path=pages/a&width=big&sig=" + bogus, 403, 990412},
		{"bad sig, disallowed path", "path=admin/secret&sig=" + bogus, 403, 990412},
		{"bad sig, path too long", "path=pages/" + strings.Repeat("a", 200) + "&sig=" + bogus, 403, 990412},
		{"bad sig, malformed query", "path=%zz&sig=" + bogus, 403, 990412},
		{"signed, disallowed path", "path=admin/secret&sig=" + hmacHex(signKey, canonical("admin/secret")), 403, 990403},
		{"signed, allowed path", "path=pages/a&sig=" + hmacHex(signKey, canonical("pages/a")), 200, 0},
		// The width is not signed: a good signature with a bad width is
		// bad input, as on a route without sign_key.
		{"signed, width too wide", "path=pages/a&width=2000&sig=" + hmacHex(signKey, canonical("pages/a")), 400, 40097},
		{"signed, width not a number", "path=pages/a&width=big&sig=" + hmacHex(signKey, canonical("pages/a")), 400, 40097},
		{"signed, disallowed path, bad width", "path=admin/secret&width=2000&sig=" + hmacHex(signKey, canonical("admin/secret")), 400, 40097},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.get("/qr?" + tt.query)
			if tt.status == 200 {
				assertImage(t, resp, body, "image/jpeg", 430)
				return
			}
			assertError(t, resp, body, tt.status, tt.errcode)
			if tt.errcode == 40097 && !strings.Contains(string(body), "width must be a whole number from 280 to 1280, not") {
				t.Errorf("errmsg does not name the width: %s", body)
			}
		})
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}
