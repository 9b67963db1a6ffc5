package wxqrcode_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// handlerJSON adapts a site holding directives and returns the JSON of the
// one wxqrcode handler in it.
func handlerJSON(t *testing.T, directives string) (map[string]any, error) {
	t.Helper()
	cfg, err := adapt("http://127.0.0.1:8080 {\n" + directives + "\n}\n")
	if err != nil {
		return nil, err
	}
	var found []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "wxqrcode" {
				found = append(found, v)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var doc any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	walk(doc)
	if len(found) != 1 {
		t.Fatalf("want one wxqrcode handler, found %d in %s", len(found), cfg)
	}
	return found[0], nil
}

func TestCaddyfileEverySubdirective(t *testing.T) {
	got, err := handlerJSON(t, `wxqrcode /qr {
		appid {env.WX_APPID}
		secret {env.WX_SECRET}
		api wxacode
		path pages/item/item?id={query.id}
		width {query.w}
		auto_color false
		line_color "#102030"
		is_hyaline {query.t}
		env_version trial
		cache_dir /var/cache/wxqrcode
		token classic
		api_base https://api2.weixin.qq.com
		timeout 3s
		allow pages/item/item?id=* pages/index/index
		allow pages/about/about
		sign_key {env.KEY_NEW} {env.KEY_OLD}
		cap 100 per 1h
		cap 5000
		cap 10 per 1m by {header.X-User}
		max_stored 500
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"handler":     "wxqrcode",
		"appid":       "{env.WX_APPID}",
		"secret":      "{env.WX_SECRET}",
		"api":         "wxacode",
		"path":        "pages/item/item?id={http.request.uri.query.id}",
		"width":       "{http.request.uri.query.w}",
		"auto_color":  "false",
		"line_color":  "#102030",
		"is_hyaline":  "{http.request.uri.query.t}",
		"env_version": "trial",
		"cache_dir":   "/var/cache/wxqrcode",
		"token":       "classic",
		"api_base":    "https://api2.weixin.qq.com",
		"timeout":     3e9,
		"allow":       []any{"pages/item/item?id=*", "pages/index/index", "pages/about/about"},
		"sign_key":    []any{"{env.KEY_NEW}", "{env.KEY_OLD}"},
		"caps": []any{map[string]any{"codes": 100.0, "per": 3.6e12}, map[string]any{"codes": 5000.0},
			map[string]any{"codes": 10.0, "per": 6e10, "by": "{http.request.header.X-User}"}},
		"max_stored": 500.0,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("adapted\n%v\nwant\n%v", got, want)
	}
}

func TestCaddyfileUnlimitedAndStorage(t *testing.T) {
	got, err := handlerJSON(t, `wxqrcode /p/* {
		appid wx1
		secret s
		api unlimited
		scene {path.1}
		page pages/item/item
		check_path false
		cap 5000 per 1m
		storage file_system {
			root /srv/shared
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"handler": "wxqrcode", "appid": "wx1", "secret": "s", "api": "unlimited",
		"scene": "{http.request.uri.path.1}", "page": "pages/item/item", "check_path": "false",
		"caps":    []any{map[string]any{"codes": 5000.0, "per": 60000000000.0}},
		"storage": map[string]any{"module": "file_system", "root": "/srv/shared"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("adapted\n%v\nwant\n%v", got, want)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	const head = "wxqrcode {\n\tappid wx1\n\tsecret s\n" // lines 2-4 of the site
	tests := []struct {
		name, block string
		line        int
		msg         string
	}{
		{"unknown subdirective", head + "\tcolour red\n\tallow *\n}", 5, `unknown subdirective "colour", at`},
		{"typo, one letter out", head + "\talow *\n}", 5, `unknown subdirective "alow" (did you mean allow?)`},
		{"typo, letters swapped", head + "\tsecert s\n\tallow *\n}", 5, `unknown subdirective "secert" (did you mean secret?)`},
		{"typo, two letters", head + "\tmemory_cahce off\n\tallow *\n}", 5, `unknown subdirective "memory_cahce" (did you mean memory_cache?)`},
		{"bad width names it", head + "\twidth 2000\n\tallow *\n}", 5, `width must be a whole number from 280 to 1280, not "2000"`},
		{"bad api", head + "\tapi barcode\n\tallow *\n}", 5, "api must be qrcode, wxacode, unlimited, oa_temporary, oa_permanent, link, urllink, scheme or shortlink"},
		{"api placeholder", head + "\tapi {query.api}\n\tallow *\n}", 5, "api must be"},
		{"bad token", head + "\ttoken shared\n\tallow *\n}", 5, "token must be stable, classic, url <url> or none"},
		{"bad api_base", head + "\tapi_base ftp://x\n\tallow *\n}", 5, "api_base must be an http or https URL"},
		{"bad width", head + "\twidth 2000\n\tallow *\n}", 5, "width must be a whole number from 280 to 1280"},
		{"bad line_color", head + "\tapi wxacode\n\tline_color red\n\tallow *\n}", 6, "line_color must be"},
		{"bad bool", head + "\tapi wxacode\n\tis_hyaline yes\n\tallow *\n}", 6, "is_hyaline must be true or false"},
		{"bad env_version", head + "\tapi wxacode\n\tenv_version beta\n\tallow *\n}", 6, "env_version must be"},
		{"bad timeout", head + "\ttimeout soon\n\tallow *\n}", 5, "bad timeout"},
		{"bad max_stored", head + "\tmax_stored 0\n\tallow *\n}", 5, `max_stored must be a number of codes, at least 1, not "0"`},
		{"typo max_stored", head + "\tmax_store 5\n\tallow *\n}", 5, `(did you mean max_stored?)`},
		{"negative timeout", head + "\ttimeout -1s\n\tallow *\n}", 5, "timeout must be at most 1h and not negative"},
		{"long timeout", head + "\ttimeout 2h\n\tallow *\n}", 5, "timeout must be at most 1h and not negative"},
		{"twice", head + "\tappid wx2\n\tallow *\n}", 5, "appid given twice"},
		{"missing arg", head + "\tpath\n\tallow *\n}", 5, "wrong argument count"},
		{"extra arg", head + "\tapi qrcode wxacode\n\tallow *\n}", 5, "wrong argument count"},
		{"empty allow", head + "\tallow\n}", 5, "wrong argument count"},
		{"unknown storage", head + "\tstorage nowhere\n\tallow *\n}", 5, "nowhere"},
		{"no guard for qrcode", head + "}", 2, "cap 20000"},
		{"no allow for wxacode", head + "\tapi wxacode\n}", 2, "lifetime budget of 100,000"},
		{"missing secret", "wxqrcode {\n\tappid wx1\n\tallow *\n}", 2, "secret is required"},
		{"scene for qrcode", head + "\tscene x\n\tallow *\n}", 5, "scene applies to api unlimited, oa_temporary and oa_permanent only"},
		{"path for unlimited", head + "\tapi unlimited\n\tpath x\n}", 6, "path applies to api qrcode, wxacode, urllink, scheme and shortlink only"},
		{"cache_dir and storage", head + "\tcache_dir /a\n\tstorage file_system {\n\t\troot /b\n\t}\n\tallow *\n}", 6, "either cache_dir or storage"},
		{"cap not a number", head + "\tcap many\n\tallow *\n}", 5, "not a positive number of codes"},
		{"cap zero", head + "\tcap 0\n\tallow *\n}", 5, "not a positive number of codes"},
		{"cap bad word", head + "\tcap 5 each 1h\n\tallow *\n}", 5, "cap takes <n>, <n> per <duration> or <n> per <duration> by <template>"},
		{"cap by without per", head + "\tcap 5 by {client_ip}\n\tallow *\n}", 5, "by needs a window"},
		{"cap by bad word", head + "\tcap 5 per 1h with {client_ip}\n\tallow *\n}", 5, "cap takes <n>"},
		{"two caps per window by one template", head + "\tcap 5 per 1h by {client_ip}\n\tcap 9 per 60m by {client_ip}\n\tallow *\n}", 6, "two caps per 1h0m0s by {client_ip}"},
		{"cap bad window", head + "\tcap 5 per soon\n\tallow *\n}", 5, "not a positive duration"},
		{"two caps per window", head + "\tcap 5 per 1h\n\tcap 50 per 60m\n\tallow *\n}", 6, "two caps per 1h0m0s"},
		{"two budgets", head + "\tcap 5\n\tcap 50\n}", 6, "two total budgets"},
		{"sign_key without key", head + "\tsign_key\n}", 5, "wrong argument count"},
		{"matcher arg", "wxqrcode /qr extra {\n\tappid wx1\n\tsecret s\n\tallow *\n}", 2, "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlerJSON(t, tt.block)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), fmt.Sprintf("Caddyfile:%d", tt.line)) {
				t.Errorf("error %q, want %q at Caddyfile:%d", err, tt.msg, tt.line)
			}
		})
	}
}

// The JSON keeps the placeholders, so the secret is not written to disk
// with the config, and a missing variable is refused at load.
func TestCredentialsResolvedAtLoad(t *testing.T) {
	t.Setenv("WXQRCODE_TEST_EMPTY", "")
	cfg, err := adapt(fmt.Sprintf("{\n\tadmin off\n}\nhttp://127.0.0.1:%d {\n\twxqrcode {\n\t\tappid wx1\n\t\tsecret {env.WXQRCODE_TEST_EMPTY}\n\t\tallow *\n\t\tcap 100000\n\t}\n}\n", freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"secret":"{env.WXQRCODE_TEST_EMPTY}"`) {
		t.Errorf("adapted config lost the placeholder: %s", cfg)
	}
	err = caddy.Validate(&caddy.Config{AppsRaw: appsOf(t, cfg)})
	if err == nil || !strings.Contains(err.Error(), `secret is empty after resolving "{env.WXQRCODE_TEST_EMPTY}"`) {
		t.Errorf("want a load error for an empty secret, got %v", err)
	}
}

func appsOf(t *testing.T, cfg []byte) caddy.ModuleMap {
	t.Helper()
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	return c.AppsRaw
}

// Signing keys, like the secret, stay placeholders in the JSON, and a key
// too short is refused at load.
func TestSignKeyResolvedAtLoad(t *testing.T) {
	t.Setenv("WXQRCODE_TEST_SHORT_KEY", "short")
	cfg, err := adapt(fmt.Sprintf("{\n\tadmin off\n}\nhttp://127.0.0.1:%d {\n\twxqrcode {\n\t\tappid wx1\n\t\tsecret {env.%s}\n\t\tsign_key {env.WXQRCODE_TEST_SHORT_KEY}\n\t}\n}\n", freePort(t), secretEnv))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "short") || strings.Contains(string(cfg), testSecret) {
		t.Errorf("adapted config holds a resolved secret: %s", cfg)
	}
	err = caddy.Validate(&caddy.Config{AppsRaw: appsOf(t, cfg)})
	if err == nil || !strings.Contains(err.Error(), "sign_key must be at least 16 characters") || strings.Contains(err.Error(), "short") {
		t.Errorf("want a load error naming the rule, not the key; got %v", err)
	}
}

// timeout 0 means the default in the Caddyfile as in the JSON, where it
// is left out.
func TestCaddyfileTimeoutZero(t *testing.T) {
	got, err := handlerJSON(t, "wxqrcode {\n\tappid wx1\n\tsecret s\n\ttimeout 0\n\tallow pages/a\n}")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["timeout"]; ok {
		t.Errorf("timeout 0 adapted to %v, want it left out (the default)", got["timeout"])
	}
}

// The JSON is held to the Caddyfile's bounds on timeout.
func TestJSONTimeoutBounds(t *testing.T) {
	for timeout, ok := range map[string]bool{`"2h"`: false, `"-1s"`: false, `"1h"`: true, `0`: true} {
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[
			{"handler":"wxqrcode","appid":"wx1","secret":"{env.%s}","allow":["pages/a"],"timeout":%s}]}]}}}}}`, freePort(t), secretEnv, timeout)
		var c caddy.Config
		if err := json.Unmarshal([]byte(cfg), &c); err != nil {
			t.Fatal(err)
		}
		err := caddy.Validate(&c)
		if ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "timeout must be at most 1h")) {
			t.Errorf("timeout %s: %v", timeout, err)
		}
	}
}

// An unset rotation key is left out, so examples/posters loads outside a
// rotation; an unset first key (the one that signs) and a short key are
// refused, naming the key by its placeholder.
func TestSignKeyRotationUnset(t *testing.T) {
	t.Setenv("WXQRCODE_TEST_NEW_KEY", signKey)
	t.Setenv("WXQRCODE_TEST_OLD_KEY", "")
	t.Setenv("WXQRCODE_TEST_SHORT_KEY", "short")
	for _, tc := range []struct{ keys, want string }{
		{"{env.WXQRCODE_TEST_NEW_KEY} {env.WXQRCODE_TEST_OLD_KEY}", ""},
		{"{env.WXQRCODE_TEST_OLD_KEY} {env.WXQRCODE_TEST_NEW_KEY}", "the first sign_key, {env.WXQRCODE_TEST_OLD_KEY}, is empty"},
		{"{env.WXQRCODE_TEST_NEW_KEY} {env.WXQRCODE_TEST_SHORT_KEY}", "{env.WXQRCODE_TEST_SHORT_KEY} is 5"},
	} {
		cfg, err := adapt(fmt.Sprintf("{\n\tadmin off\n}\nhttp://127.0.0.1:%d {\n\twxqrcode {\n\t\tappid wx1\n\t\tsecret {env.%s}\n\t\tsign_key %s\n\t}\n}\n", freePort(t), secretEnv, tc.keys))
		if err != nil {
			t.Fatal(err)
		}
		err = caddy.Validate(&caddy.Config{AppsRaw: appsOf(t, cfg)})
		if tc.want == "" && err != nil {
			t.Errorf("%s: %v, want it to load", tc.keys, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want an error saying %q", tc.keys, err, tc.want)
		}
	}
}

// A secret whose placeholder resolves to nothing is refused at load with
// the placeholder and the line of its block: with two blocks, the user
// must know which. caddy validate says the same, with the file's name.
func TestUnresolvedSecretNamesBlock(t *testing.T) {
	t.Setenv("WXQRCODE_TEST_UNSET_SECRET", "")
	text := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
}
http://127.0.0.1:%d {
	wxqrcode /qr {
		appid %s
		secret {env.%s}
		allow pages/index/index
	}
	wxqrcode /poster {
		appid %s
		secret {env.WXQRCODE_TEST_UNSET_SECRET}
		api unlimited
		scene s1
		page pages/index/index
	}
}
`, t.TempDir(), freePort(t), testAppID, secretEnv, testAppID)
	const want = `secret is empty after resolving "{env.WXQRCODE_TEST_UNSET_SECRET}": set it, or the environment variable it names, at `
	cfg, err := adapt(text)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(configOf(t, cfg)); err == nil || !strings.Contains(err.Error(), want+"Caddyfile:12") {
		t.Errorf("load: %v, want it to say %q", err, want+"Caddyfile:12")
	}

	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(builtCaddy(t), "validate", "--config", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), strings.ReplaceAll(want, `"`, `\"`)+file+":12") {
		t.Errorf("caddy validate: %v, want it to say %q:\n%s", err, want+file+":12", out)
	}
}
