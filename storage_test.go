package wxqrcode_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	cf "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
)

func init() {
	caddy.RegisterModule(faultyStorage{})
}

// storageBroken makes every faultyStorage fail every operation.
var storageBroken atomic.Bool

var errInjected = errors.New("injected storage fault")

// faultyStorage is a file_system storage that fails while storageBroken is
// set: a storage module gone wrong, for the tests.
type faultyStorage struct {
	Root string `json:"root"`
}

func (faultyStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "caddy.storage.wxqrcode_test_faulty", New: func() caddy.Module { return new(faultyStorage) }}
}

func (f *faultyStorage) UnmarshalCaddyfile(d *cf.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		if d.Val() != "root" || !d.NextArg() {
			return d.ArgErr()
		}
		f.Root = d.Val()
	}
	return nil
}

func (f *faultyStorage) CertMagicStorage() (certmagic.Storage, error) {
	return faulty{&certmagic.FileStorage{Path: f.Root}}, nil
}

type faulty struct{ *certmagic.FileStorage }

func broken() error {
	if storageBroken.Load() {
		return errInjected
	}
	return nil
}

func (s faulty) Store(ctx context.Context, key string, value []byte) error {
	if err := broken(); err != nil {
		return err
	}
	return s.FileStorage.Store(ctx, key, value)
}

func (s faulty) Load(ctx context.Context, key string) ([]byte, error) {
	if err := broken(); err != nil {
		return nil, err
	}
	return s.FileStorage.Load(ctx, key)
}

func (s faulty) Delete(ctx context.Context, key string) error {
	if err := broken(); err != nil {
		return err
	}
	return s.FileStorage.Delete(ctx, key)
}

func (s faulty) Lock(ctx context.Context, name string) error {
	if err := broken(); err != nil {
		return err
	}
	return s.FileStorage.Lock(ctx, name)
}

func (s faulty) Unlock(ctx context.Context, name string) error {
	if err := broken(); err != nil {
		return err
	}
	return s.FileStorage.Unlock(ctx, name)
}

func (s faulty) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := broken(); err != nil {
		return certmagic.KeyInfo{}, err
	}
	return s.FileStorage.Stat(ctx, key)
}

// A storage that fails costs the cache, not the answer; the faults are
// logged without flooding, and the cache works again once it recovers.
func TestStorageFaults(t *testing.T) {
	fake := newFake(t)
	root := t.TempDir()
	s := startSite(t, fake, "", qrBlock(fake, "allow *\nmemory_cache off\nstorage wxqrcode_test_faulty {\n\troot "+root+"\n}"))
	storageBroken.Store(true)
	t.Cleanup(func() { storageBroken.Store(false) })
	for range 10 {
		resp, body := s.get("/qr?path=pages/broken")
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if fake.CodeCalls() != 10 || fake.TokenCalls() != 1 {
		t.Errorf("%d code and %d token calls with a broken storage, want 10 and 1", fake.CodeCalls(), fake.TokenCalls())
	}
	storageBroken.Store(false)
	resp, body := s.get("/qr?path=pages/broken")
	assertImage(t, resp, body, "image/jpeg", 430)
	waitCached(t, root, 1)
	resp, body = s.get("/qr?path=pages/broken")
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := fake.CodeCalls(); n != 11 {
		t.Errorf("%d code calls, want 11: the recovered storage serves the code", n)
	}
	logs, err := os.ReadFile(filepath.Join(logDir, t.Name()+".log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"reading the cache; fetching the code", "storing a code; it is served, not cached", "locking a cache entry; fetching without the lock"} {
		if n := strings.Count(string(logs), msg); n != 1 {
			t.Errorf("%q logged %d times for 10 faults, want once", msg, n)
		}
	}
}

// A cache_dir that cannot be written, here under a regular file, still
// serves codes.
func TestUnwritableCacheDir(t *testing.T) {
	fake := newFake(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSite(t, fake, "", qrBlock(fake, "allow *\nmemory_cache off\ncache_dir "+filepath.Join(file, "cache")))
	for range 3 {
		resp, body := s.get("/qr?path=pages/nowhere")
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if n := fake.CodeCalls(); n != 3 {
		t.Errorf("%d code calls, want 3: nothing can be cached", n)
	}
}
