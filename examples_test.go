package wxqrcode_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
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
			// Loaded with every storage moved into a temporary directory,
			// which loading must leave empty: caddy validate writes nothing.
			stores := t.TempDir()
			if err := caddy.Validate(configOf(t, storagesIn(t, cfg, stores))); err != nil {
				t.Errorf("does not load: %v", err)
			}
			assertEmpty(t, stores)
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

// storagesIn moves the storages of cfg into dir: the global storage (set
// when cfg has none, for Caddy's default), every file_system root and
// every cache_dir.
func storagesIn(t *testing.T, cfg []byte, dir string) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	if c["storage"] == nil {
		c["storage"] = map[string]any{"module": "file_system", "root": "default"}
	}
	n := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["module"] == "file_system" && v["root"] != nil {
				n++
				v["root"] = filepath.Join(dir, fmt.Sprintf("root%d", n))
			}
			if v["cache_dir"] != nil {
				n++
				v["cache_dir"] = filepath.Join(dir, fmt.Sprintf("cache_dir%d", n))
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(c)
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertEmpty fails if anything was written under dir.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != dir {
			t.Errorf("loading the config wrote %s", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
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
