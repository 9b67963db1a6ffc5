package wxqrcode_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
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

// caddy validate, caddy adapt, and a Caddy that loads a config and stops
// without a request, leave every storage as it was: the counts behind caps
// are created with the first code.
func TestLoadWritesNothing(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	stores := filepath.Join(dir, "stores")
	port := freePort(t)
	directives := qrBlock(fake, "allow *\ncap 100\ncap 10 per 1h\ncap 5 per 1m by {client_ip}") +
		wxBlock(fake, "/poster/*", "api unlimited\nscene {path.1}\npage pages/index/index\ncap 50 per 1h\ncache_dir "+filepath.Join(stores, "posters")) +
		wxBlock(fake, "/oa", "api oa_permanent\nallow *\ncap 10\nstorage file_system {\n\troot "+filepath.Join(stores, "oa")+"\n}")
	text := caddyfile(t, port, filepath.Join(stores, "default"), directives)
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"validate", "--config", config}, {"adapt", "--config", config}} {
		if out, err := exec.Command(builtCaddy(t), args...).CombinedOutput(); err != nil {
			t.Fatalf("caddy %s: %v\n%s", args[0], err, out)
		}
	}
	if _, err := os.Stat(stores); err == nil {
		t.Errorf("caddy validate created %s", stores)
	}

	startSite(t, fake, filepath.Join(stores, "default"), directives)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"default/wxqrcode", "posters", "oa"} {
		if _, err := os.Stat(filepath.Join(stores, sub)); err == nil {
			t.Errorf("a Caddy that served nothing wrote %s", filepath.Join(stores, sub))
		}
	}

	s := startSite(t, fake, filepath.Join(stores, "default"), directives)
	resp, body := s.get("/qr?path=pages/index/index")
	assertImage(t, resp, body, "image/jpeg", 430)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stores, "default", "wxqrcode", "quota", testAppID, "limited.json")); err != nil {
		t.Errorf("the first code wrote no count: %v", err)
	}
}
