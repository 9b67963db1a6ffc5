package wxqrcode_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// guardConfig is a Caddyfile with one wxqrcode block of options at line 7.
func guardConfig(t *testing.T, options string) string {
	return fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tstorage file_system %s\n}\nhttp://127.0.0.1:%d {\n\twxqrcode /qr {\n\t\tappid %s\n\t\tsecret {env.%s}\n\t\t%s\n\t}\n}\n",
		t.TempDir(), freePort(t), testAppID, secretEnv, strings.ReplaceAll(options, "\n", "\n\t\t"))
}

// assertRefused wants the adapter to refuse a guardConfig of options with
// an error saying each of want.
func assertRefused(t *testing.T, options string, want ...string) {
	t.Helper()
	_, err := adapt(guardConfig(t, options))
	if err == nil {
		t.Fatal("the config was accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nwant it to say %q", err, w)
		}
	}
}

// assertLoads wants a guardConfig of options to adapt and load.
func assertLoads(t *testing.T, options string) {
	t.Helper()
	cfg, err := adapt(guardConfig(t, options))
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(configOf(t, cfg)); err != nil {
		t.Fatalf("does not load: %v", err)
	}
}

// TestGuardRule: a config whose requests can choose among unboundedly many
// codes is refused at load unless sign_key or a fitting cap bounds them,
// with the line to add; a config that pins its codes loads as it is.
func TestGuardRule(t *testing.T) {
	// line is the option at fault, or the directive's (7) for a default.
	refused := []struct {
		name, options string
		want          []string
		line          int
	}{
		{"qrcode allow *", "allow *", []string{
			"api qrcode spends WeChat's lifetime budget of 100,000 codes per app and requests choose the path (allow * has a *): " +
				"add a total such as 'cap 20000', or 'sign_key {env.WXQRCODE_SIGN_KEY}'"}, 10},
		{"qrcode glob and a window cap", "allow pages/index/index pages/item/item?id=*\ncap 500 per 1h", []string{
			"api qrcode spends WeChat's lifetime budget of 100,000 codes per app and requests choose the path (allow pages/item/item?id=* has a *): " +
				"add a total such as 'cap 20000', or 'sign_key {env.WXQRCODE_SIGN_KEY}'; a cap per window bounds a rate, not the budget"}, 10},
		{"qrcode nothing", "", []string{"requests choose the path (the default, path {query.path}, reads the request, and no allow list pins it)", "'cap 20000'"}, 7},
		{"wxacode path from a header", "api wxacode\npath {header.X-Page}\ncap 50 per 1m", []string{"api wxacode", "path {header.X-Page} reads the request", "'cap 20000'"}, 11},
		{"unlimited scene from the path", "api unlimited\nscene {path.1}\npage pages/item/item", []string{
			"api unlimited has no budget of its own and requests choose the scene (scene {path.1} reads the request", "add a cap such as 'cap 5000 per 1m'", "'sign_key {env.WXQRCODE_SIGN_KEY}'"}, 11},
		{"unlimited default scene, literal pages", "api unlimited\nallow pages/item/item", []string{"requests choose the scene (the default, scene {query.scene}, reads the request", "'cap 5000 per 1m'"}, 7},
		{"unlimited page glob", "api unlimited\nscene s1\nallow pages/*", []string{"requests choose the page (allow pages/* has a *)", "'cap 5000 per 1m'"}, 12},
		{"line_color from the query", "api wxacode\nallow pages/item/item\nline_color {query.color}", []string{"requests choose the line colour (line_color {query.color} reads the request)", "'cap 20000'"}, 12},
		{"unlimited line_color from the query", "api unlimited\nscene s1\npage pages/item/item\nline_color {query.color}", []string{"requests choose the line colour", "'cap 5000 per 1m'"}, 13},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			assertRefused(t, tt.options, append(tt.want, fmt.Sprintf("at Caddyfile:%d", tt.line))...)
		})
	}
	accepted := []struct{ name, options string }{
		{"literal allow list", "allow pages/index/index pages/item/item?id=42"},
		{"fixed path", "path pages/index/index"},
		{"path from the environment", "path {env.WXQRCODE_TEST_PAGE}"},
		{"total cap", "allow *\ncap 20000"},
		{"total cap beside a window cap", "allow pages/item/item?id=*\ncap 500 per 1h\ncap 20000"},
		{"sign_key", "sign_key {env." + signKeyEnv + "}"},
		{"unlimited with a window cap", "api unlimited\nscene {path.1}\ncap 5000 per 1m"},
		{"unlimited with a total cap", "api unlimited\ncap 100000"},
		{"unlimited with sign_key", "api unlimited\nsign_key {env." + signKeyEnv + "}"},
		{"unlimited fixed scene and page", "api unlimited\nscene s1\npage pages/item/item"},
		{"unlimited fixed scene, literal pages", "api unlimited\nscene s1\nallow pages/index/index pages/item/item"},
		{"small multipliers from the query", "api wxacode\nallow pages/item/item\nwidth {query.w}\nis_hyaline {query.h}\nauto_color {query.a}\nenv_version {query.env}"},
	}
	t.Setenv(signKeyEnv, signKey)
	t.Setenv("WXQRCODE_TEST_PAGE", "pages/index/index")
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) { assertLoads(t, tt.options) })
	}
}

// The rule holds for JSON configs too, checked when Caddy loads them; a
// cap per visitor bounds no total.
func TestGuardRuleJSON(t *testing.T) {
	handler := `{"handler":"wxqrcode","appid":"` + testAppID + `","secret":"{env.` + secretEnv + `"}`
	tests := []struct {
		name, fields, want string
	}{
		{"allow *", `"allow":["*"]`, "api qrcode spends WeChat's lifetime budget"},
		{"per-visitor total", `"allow":["*"],"caps":[{"codes":100,"by":"{http.request.remote.host}"}]`, "by needs a window"},
		{"per-visitor window only", `"allow":["*"],"caps":[{"codes":100,"per":60000000000,"by":"{http.request.remote.host}"}]`, "add a total such as 'cap 20000'"},
		{"unlimited per-visitor cap", `"api":"unlimited","caps":[{"codes":5,"per":60000000000,"by":"{http.request.remote.host}"}]`, "a cap per visitor (by) does not bound"},
		// A JSON config is quoted as written, in Caddy's long form.
		{"unlimited scene from the path", `"api":"unlimited","scene":"{http.request.uri.path.1}"`, "(scene {http.request.uri.path.1} reads the request"},
		{"total cap", `"allow":["*"],"caps":[{"codes":100}]`, ""},
		{"unlimited window cap", `"api":"unlimited","caps":[{"codes":5,"per":60000000000}]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := handler[:len(handler)-1] + "," + tt.fields + "}"
			cfg := fmt.Sprintf(`{"admin":{"disabled":true},"storage":{"module":"file_system","root":%q},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[%s]}]}}}}}`,
				t.TempDir(), freePort(t), h)
			err := caddy.Validate(configOf(t, []byte(cfg)))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("does not load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// The built binary refuses the shipped example's old route with the line
// to add, at the file and line of the glob at fault.
func TestGuardRuleBinary(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	text := "shop.example.com {\n\twxqrcode /qr {\n\t\tappid {env.WX_APPID}\n\t\tsecret {env.WX_SECRET}\n\t\tallow pages/index/index pages/item/item?id=*\n\t\tcap 500 per 1h\n\t}\n}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(builtCaddy(t), "adapt", "--config", cfg).CombinedOutput()
	if err == nil {
		t.Fatalf("caddy adapt accepted the config:\n%s", out)
	}
	want := "api qrcode spends WeChat's lifetime budget of 100,000 codes per app and requests choose the path (allow pages/item/item?id=* has a *): " +
		"add a total such as 'cap 20000', or 'sign_key {env.WXQRCODE_SIGN_KEY}'; a cap per window bounds a rate, not the budget, at " + cfg + ":5"
	if !strings.Contains(string(out), want) {
		t.Fatalf("caddy adapt said:\n%s\nwant:\n%s", out, want)
	}
}

// api_base takes plain http to a loopback host only: the secret and the
// access token travel to it.
func TestAPIBaseNeedsHTTPS(t *testing.T) {
	for _, base := range []string{"http://api.weixin.qq.com", "http://10.0.0.1:8080", "http://localhost.example.com", "http://[2001:db8::1]"} {
		t.Run("refused "+base, func(t *testing.T) {
			_, err := adapt(guardConfig(t, "allow pages/a\napi_base "+base))
			if err == nil || !strings.Contains(err.Error(), "api_base needs https") || !strings.Contains(err.Error(), "at Caddyfile:11") {
				t.Fatalf("error %v, want api_base needs https at its line", err)
			}
		})
	}
	for _, base := range []string{"https://api.weixin.qq.com", "http://127.0.0.1:8080", "http://127.1.2.3", "http://localhost:9000", "http://[::1]:9000"} {
		t.Run("accepted "+base, func(t *testing.T) {
			cfg, err := adapt(guardConfig(t, "allow pages/a\napi_base "+base))
			if err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(configOf(t, cfg)); err != nil {
				t.Fatalf("does not load: %v", err)
			}
		})
	}
	// A placeholder is checked once resolved, when Caddy loads the config.
	t.Setenv("WXQRCODE_TEST_API_BASE", "http://api.weixin.qq.com")
	cfg, err := adapt(guardConfig(t, "allow pages/a\napi_base {env.WXQRCODE_TEST_API_BASE}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(configOf(t, cfg)); err == nil || !strings.Contains(err.Error(), "api_base needs https") {
		t.Fatalf("error %v, want api_base needs https", err)
	}
}

// A secret or sign key written into the config draws a warning at load,
// which names the option and never the value; placeholders draw none.
func TestLiteralSecretsWarned(t *testing.T) {
	t.Setenv(signKeyEnv, signKey)
	tests := []struct {
		name, secret, keys string
		warnings           []string
		quiet              []string
	}{
		{"literal", testSecret, "{env." + signKeyEnv + "} " + oldSignKey,
			[]string{"the secret is written in the config", `"sign_key":2`},
			[]string{`"sign_key":1`}},
		{"placeholders", "{env." + secretEnv + "}", "{env." + signKeyEnv + "}",
			nil,
			[]string{"is written in the config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			startSite(t, fake, "", fmt.Sprintf("wxqrcode /qr {\n\t\tappid %s\n\t\tsecret %s\n\t\tapi_base %s\n\t\tsign_key %s\n\t}\n",
				testAppID, tt.secret, fake.URL, tt.keys))
			raw, err := os.ReadFile(filepath.Join(logDir, strings.ReplaceAll(t.Name(), "/", "_")+".log"))
			if err != nil {
				t.Fatal(err)
			}
			logs := string(raw)
			for _, want := range tt.warnings {
				if !strings.Contains(logs, want) {
					t.Errorf("no warning with %q in the log", want)
				}
			}
			for _, quiet := range tt.quiet {
				if strings.Contains(logs, quiet) {
					t.Errorf("the log says %q", quiet)
				}
			}
			if strings.Contains(logs, testSecret) || strings.Contains(logs, oldSignKey) || strings.Contains(logs, signKey) {
				t.Error("the log holds the secret or a key")
			}
		})
	}
}
