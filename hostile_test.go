package wxqrcode_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// hostileSite serves the three APIs with every template fed from the query.
func hostileSite(t *testing.T) (*site, *wechattest.Server) {
	t.Helper()
	fake := newFake(t)
	look := "\nwidth {query.w}\nenv_version {query.env}\nline_color {query.color}\nis_hyaline {query.hy}\nauto_color {query.auto}"
	s := startSite(t, fake, "", qrBlock(fake, "allow *\ncap 100000\nwidth {query.w}")+
		wxBlock(fake, "/wxa", "api wxacode\nallow *\ncap 100000"+look)+
		wxBlock(fake, "/u", "api unlimited\ncheck_path {query.cp}\ncap 100000"+look))
	return s, fake
}

func TestHostileInput(t *testing.T) {
	s, fake := hostileSite(t)
	long := strings.Repeat("a", 4<<10) // longer ones meet Caddy's header limit first (431)
	tests := []struct {
		uri     string
		status  int
		errcode int
	}{
		// repeated and malformed parameters
		{"/qr?path=a&path=b", 400, 40097},
		{"/qr?path=a&w=300&w=400", 400, 40097},
		{"/u?scene=a&scene=b", 400, 40097},
		{"/qr?path=a%zz", 400, 40097},
		{"/qr?path=a;b", 400, 40097},
		// NUL and control bytes
		{"/qr?path=pages/a%00", 400, 40159},
		{"/qr?path=pages/a%0Ab", 400, 40159},
		{"/qr?path=pages/a%7F", 400, 40159},
		{"/wxa?path=a&w=300%00", 400, 40097},
		{"/wxa?path=a&env=release%00", 400, 40097},
		{"/wxa?path=a&color=1,2,3%00", 400, 40097},
		{"/wxa?path=a&hy=true%00", 400, 40097},
		{"/u?scene=a%00", 400, 40129},
		{"/u?scene=a&page=pages/a%0D", 400, 41030},
		{"/u?scene=a&cp=true%09", 400, 40097},
		// invalid UTF-8
		{"/qr?path=pages/%C3%28", 400, 40159},
		{"/u?scene=a&page=pages/%FF", 400, 41030},
		{"/u?scene=%C3%A9", 400, 40129},
		// .. and / where they do not belong
		{"/qr?path=pages/../admin", 400, 40159},
		{"/qr?path=../../etc/passwd", 400, 40159},
		{"/wxa?path=a&w=../430", 400, 40097},
		{"/wxa?path=a&env=../release", 400, 40097},
		{"/wxa?path=a&color=../1,2,3", 400, 40097},
		{"/wxa?path=a&auto=/true", 400, 40097},
		{"/u?scene=a&page=pages/../x", 400, 41030},
		{"/u?scene=a&page=/pages/x", 400, 41030},
		// very long values
		{"/qr?path=" + long, 400, 40159},
		{"/wxa?path=" + long, 400, 40159},
		{"/u?scene=" + long, 400, 40169},
		{"/u?scene=a&page=p&w=" + long, 400, 40097},
	}
	for _, tt := range tests {
		resp, body := s.get(tt.uri)
		assertError(t, resp, body, tt.status, tt.errcode)
	}
	if fake.CodeCalls() != 0 || fake.TokenCalls() != 0 {
		t.Errorf("hostile input made %d code and %d token calls", fake.CodeCalls(), fake.TokenCalls())
	}
	// A scene may hold . and /: it is opaque data, and never a file name.
	for _, uri := range []string{"/u?scene=../../etc", "/u?scene=%2F..%2F..%2Fx", "/qr?path=pages/a/a%3Fnext%3D..%2F..%2F"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	// Stopping Caddy waits for what is stored after the answers.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	assertStorageLayout(t, s.dir)
}

// assertStorageLayout checks that nothing a request said became a path in
// the storage: codes are named by their hashes.
func assertStorageLayout(t *testing.T, dir string) {
	t.Helper()
	ok := regexp.MustCompile(`^(wxqrcode/codes/[0-9a-f]{2}/[0-9a-f]{64}|wxqrcode/quota/wx[0-9a-f]{16}/(limited|unlimited)\.json|wxqrcode/tokens/wx[0-9a-f]{16}/(stable|classic)\.json|wxqrcode/stored/wx[0-9a-f]{16}/(qrcode|wxacode|unlimited|oa_temporary|oa_permanent)/(head|seg/[0-9]+)|locks/wxqrcodelocks(codes[0-9a-f]{64}|tokenswx[0-9a-f]{16}(stable|classic)|storedwx[0-9a-f]{16}[a-z_]+|quotawx[0-9a-f]{16}[a-z_]+)\.lock|instance\.uuid|last_clean\.json)$`)
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !ok.MatchString(filepath.ToSlash(rel)) {
			t.Errorf("unexpected file in the storage: %q", rel)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walking the storage: %v (%d files)", err, n)
	}
}

func TestHostileUpstream(t *testing.T) {
	s, fake := hostileSite(t)
	tests := []struct {
		name  string
		fault wechattest.Fault
	}{
		{"endless reply", wechattest.Fault{Endless: true}},
		{"huge reply", wechattest.Fault{Body: append([]byte{0xFF, 0xD8, 0xFF}, make([]byte, 8<<20)...), ContentType: "image/jpeg"}},
		{"errcode as a string", wechattest.Fault{Body: []byte(`{"errcode":"40001","errmsg":"x"}`)}},
		{"errmsg as a number", wechattest.Fault{Body: []byte(`{"errcode":40001,"errmsg":5}`)}},
		{"errcode zero", wechattest.Fault{Body: []byte(`{"errcode":0,"errmsg":"ok"}`)}},
		{"array", wechattest.Fault{Body: []byte(`[1,2,3]`)}},
		{"null", wechattest.Fault{Body: []byte(`null`)}},
		{"deep nesting", wechattest.Fault{Body: []byte(strings.Repeat("[", 100000))}},
		{"empty", wechattest.Fault{Body: []byte{}}},
		{"png header only", wechattest.Fault{Body: []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.ClearFaults()
			fake.Inject(wechattest.PathWxaCode, tt.fault, 0)
			uri := "/wxa?path=pages/h/" + string(rune('a'+i))
			resp, body := s.get(uri)
			assertError(t, resp, body, http.StatusBadGateway, 990502)
			if n := len(cachedFiles(t, s.dir)); n != 0 {
				t.Fatalf("%d cache entries after a bad reply", n)
			}
		})
	}
	// Token replies with unexpected types.
	for _, body := range []string{`{"access_token":5,"expires_in":7200}`, `{"access_token":"x","expires_in":"7200"}`, `{"access_token":"","expires_in":7200}`, `{"access_token":"x","expires_in":-1}`} {
		fake.ClearFaults()
		fake.InvalidateTokens()
		fake.Inject(wechattest.PathStableToken, wechattest.Fault{Body: []byte(body)}, 0)
		resp, b := s.get("/wxa?path=pages/token")
		assertError(t, resp, b, http.StatusBadGateway, 990502)
	}
}
