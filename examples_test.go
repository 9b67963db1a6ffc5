package wxqrcode_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	cf "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestExamples keeps examples/ honest: each Caddyfile is caddy fmt clean,
// adapts to the JSON beside it, and loads. WXQRCODE_UPDATE_EXAMPLES=1
// rewrites the JSON.
func TestExamples(t *testing.T) {
	for k, v := range map[string]string{"WX_APPID": testAppID, "WX_SECRET": testSecret,
		"WXQRCODE_SIGN_KEY": signKey, "WXQRCODE_OLD_SIGN_KEY": oldSignKey} {
		t.Setenv(k, v)
	}
	files, err := filepath.Glob("examples/*/Caddyfile")
	if err != nil || len(files) < 3 {
		t.Fatalf("want the examples, found %v (%v)", files, err)
	}
	for _, file := range append(files, "Caddyfile.example") {
		t.Run(file, func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if formatted := cf.Format(text); !bytes.Equal(formatted, text) {
				t.Errorf("not caddy fmt clean; caddy fmt gives:\n%s", formatted)
			}
			cfg, err := adapt(string(text))
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, cfg, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			if err := caddy.Validate(configOf(t, cfg)); err != nil {
				t.Errorf("does not load: %v", err)
			}
			if file == "Caddyfile.example" {
				return
			}
			golden := filepath.Join(filepath.Dir(file), "Caddyfile.json")
			if os.Getenv("WXQRCODE_UPDATE_EXAMPLES") != "" {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("%s has drifted from its Caddyfile; adapted:\n%s", golden, pretty.Bytes())
			}
		})
	}
}

func configOf(t *testing.T, cfg []byte) *caddy.Config {
	t.Helper()
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}
