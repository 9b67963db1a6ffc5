package wxqrcode_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// outside stands in for everything outside the tests' temporary
// directories that a Caddy writes to by default: HOME, the XDG
// directories, Caddy's default storage and its autosave file. TestMain
// points them all into one empty directory and fails the run if anything
// appears there, or in the checkout: a test must give every Caddy a
// storage, a HOME and an autosave path of its own (t.TempDir), so that
// go test never touches the user's ~/.config/caddy/autosave.json or
// ~/.local/share/caddy.
type outside struct {
	dir string
	// goEnv is the environment as go test got it, for the go command,
	// whose cache and telemetry are its own business.
	goEnv []string
	// checkout lists the files of the checkout before the run.
	checkout map[string]bool
}

// homeVars are the variables that place a user's files.
var homeVars = []string{"HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"}

// enterOutside points HOME, the XDG directories, Caddy's default storage
// and its autosave path into a new empty directory.
func enterOutside() (*outside, error) {
	dir, err := os.MkdirTemp("", "wxqrcode-outside-")
	if err != nil {
		return nil, err
	}
	o := &outside{dir: dir, goEnv: os.Environ()}
	if o.checkout, err = checkoutFiles(); err != nil {
		return nil, err
	}
	for _, v := range homeVars {
		os.Setenv(v, filepath.Join(dir, strings.ToLower(v)))
	}
	// Caddy computes these once, at init, from the real HOME.
	caddy.DefaultStorage = &certmagic.FileStorage{Path: caddy.AppDataDir()}
	caddy.ConfigAutosavePath = filepath.Join(caddy.AppConfigDir(), "autosave.json")
	return o, nil
}

// check reports what the run wrote outside its temporary directories.
func (o *outside) check() error {
	var written []string
	err := filepath.WalkDir(o.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != o.dir {
			written = append(written, strings.Replace(path, o.dir, "$outside", 1))
		}
		return err
	})
	if err != nil {
		return err
	}
	after, err := checkoutFiles()
	if err != nil {
		return err
	}
	for path := range after {
		if !o.checkout[path] {
			written = append(written, "checkout: "+path)
		}
	}
	if len(written) > 0 {
		slices.Sort(written)
		return fmt.Errorf("written outside the tests' temporary directories ($outside is HOME, XDG_*, "+
			"Caddy's default storage and autosave):\n  %s", strings.Join(written, "\n  "))
	}
	return nil
}

// checkoutFiles lists the files and directories of the checkout, but for
// hidden ones (.git, an editor's) and backups.
func checkoutFiles() (map[string]bool, error) {
	files := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != "." && (strings.HasPrefix(d.Name(), ".") || strings.HasSuffix(d.Name(), "~")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		files[path] = true
		return nil
	})
	return files, err
}

// ownHome is the environment that gives a Caddy process its own HOME and
// XDG directories under t.TempDir, where its autosave and default storage
// go.
func ownHome(dir string) []string {
	var env []string
	for _, v := range homeVars {
		env = append(env, v+"="+filepath.Join(dir, strings.ToLower(v)))
	}
	return env
}
