package wxqrcode

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

const (
	finderKeyA = "key-a-0123456789abcdef"
	finderKeyB = "key-b-0123456789abcdef"
)

// findFor adapts a Caddyfile (or takes JSON) and finds the handler for
// rawURL, returning it with the canonical request it would sign.
func findFor(t *testing.T, config, rawURL string) (*Handler, string, error) {
	t.Helper()
	raw := []byte(config)
	if !strings.HasPrefix(config, "{\"") {
		var err error
		if raw, _, err = caddyconfig.GetAdapter("caddyfile").Adapt(raw, map[string]any{"filename": "Caddyfile"}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := newRouteFinder(raw)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	r, err := preparedRequest(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.find(r)
	if err != nil {
		return nil, "", err
	}
	cr, _, err := h.codeRequestOf(r)
	if err != nil {
		return h, "", err
	}
	return h, cr.canonical, nil
}

func wxq(matcher, options string) string {
	return "wxqrcode " + matcher + " {\n\t\tappid wx0123456789abcdef\n\t\tsecret s\n\t\t" +
		strings.ReplaceAll(options, "\n", "\n\t\t") + "\n\t}\n"
}

func TestRouteFinder(t *testing.T) {
	tests := []struct {
		name, config, url string
		key, canonical    string // want; key empty: no handler
	}{
		{
			name: "the server on the URL's port",
			config: "{\n\tauto_https off\n}\n:8080 {\n\t" + wxq("/qr", "sign_key "+finderKeyA+"\nallow *") +
				"}\nexample.com:8443 {\n\t" + wxq("/qr", "sign_key "+finderKeyB+"\nallow *") + "}\n",
			url: "http://example.com:8443/qr?path=pages/a", key: finderKeyB,
		},
		{
			name: "only the first matching handle block",
			config: ":8080 {\n\thandle /qr/admin* {\n\t\trespond 403\n\t}\n\thandle {\n\t\t" +
				wxq("/qr*", "sign_key "+finderKeyA+"\nallow *") + "\t}\n}\n",
			url: "http://127.0.0.1:8080/qr/admin?path=pages/a",
		},
		{
			name: "the other handle block",
			config: ":8080 {\n\thandle /qr/admin* {\n\t\trespond 403\n\t}\n\thandle {\n\t\t" +
				wxq("/qr*", "sign_key "+finderKeyA+"\nallow *") + "\t}\n}\n",
			url: "http://127.0.0.1:8080/qr?path=pages/a", key: finderKeyA,
		},
		{
			name:   "a responder first",
			config: ":8080 {\n\troute {\n\t\trespond /qr 404\n\t\t" + wxq("/qr", "sign_key "+finderKeyA+"\nallow *") + "\t}\n}\n",
			url:    "http://127.0.0.1:8080/qr?path=pages/a",
		},
		{
			name: "a terminal route in a subroute ends the chain",
			config: `{"apps":{"http":{"servers":{"s":{"listen":[":8080"],"routes":[
				{"handle":[{"handler":"subroute","routes":[{"match":[{"path":["/qr"]}],"handle":[{"handler":"headers","response":{"set":{"X":["y"]}}}],"terminal":true}]}]},
				{"handle":[{"handler":"wxqrcode","appid":"wx0123456789abcdef","allow":["*"],"sign_key":["` + finderKeyA + `"]}]}]}}}}}`,
			url: "http://127.0.0.1:8080/qr?path=pages/a",
		},
		{
			name:   "handle_path strips before the templates",
			config: ":8080 {\n\thandle_path /poster/* {\n\t\t" + wxq("", "api unlimited\nscene {path.0}\npage pages/a/a\nsign_key "+finderKeyA) + "\t}\n}\n",
			url:    "http://127.0.0.1:8080/poster/abc", key: finderKeyA,
			canonical: "api=unlimited&appid=wx0123456789abcdef&auto_color=false&check_path=true&env_version=release&is_hyaline=false&line_color=0%2C0%2C0&page=pages%2Fa%2Fa&scene=abc",
		},
		{
			name:   "regular expression captures",
			config: ":8080 {\n\t@p path_regexp p ^/p/([a-z]+)\\.png$\n\t" + wxq("@p", "api unlimited\nscene {re.p.1}\npage pages/a/a\nsign_key "+finderKeyA) + "}\n",
			url:    "http://127.0.0.1:8080/p/xyz.png", key: finderKeyA,
			canonical: "api=unlimited&appid=wx0123456789abcdef&auto_color=false&check_path=true&env_version=release&is_hyaline=false&line_color=0%2C0%2C0&page=pages%2Fa%2Fa&scene=xyz",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, canonical, err := findFor(t, tt.config, tt.url)
			if tt.key == "" {
				if err == nil || !strings.Contains(err.Error(), "no wxqrcode handler in the config serves") {
					t.Errorf("found %v (%v), want none", h, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.signKeys[0] != tt.key {
				t.Errorf("found the handler signing with %q, want %q", h.signKeys[0], tt.key)
			}
			if tt.canonical != "" && canonical != tt.canonical {
				t.Errorf("canonical %q, want %q", canonical, tt.canonical)
			}
		})
	}
}

// Odd configs give errors that say where, not panics.
func TestRouteFinderBadConfigs(t *testing.T) {
	for config, want := range map[string]string{
		`{"apps":{}}`: "no wxqrcode handler",
		`{"apps":{"http":{"servers":{"s":{"listen":[":80"],"routes":[{"handle":[1]}]}}}}}`:                                   "server s: route 0: a handler",
		`{"apps":{"http":{"servers":{"s":{"listen":[":80"],"routes":[{"handle":[{"handler":"subroute","routes":"x"}]}]}}}}}`: "server s: route 0: a handler",
		`{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:port"]}}}}}`:                                                  "server s: listen",
		`{"apps":{"http":{"servers":{"s":{"listen":[":80"],"routes":[{"match":[{"nope":{}}]}]}}}}}`:                          "server s: route 0",
	} {
		_, _, err := findFor(t, config, "http://127.0.0.1/qr?path=a")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", config, err, want)
		}
	}
}
