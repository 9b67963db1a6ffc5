package wxqrcode_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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

// storagePanics makes every faultyStorage panic when a code is locked
// (lockPanics) or stored (storePanics): a bug met in the work the module
// runs apart from requests.
var lockPanics, storePanics atomic.Bool

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
	if storePanics.Load() && strings.HasPrefix(key, "wxqrcode/codes/") {
		panic("injected panic storing " + key)
	}
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
	if lockPanics.Load() && strings.HasPrefix(name, "wxqrcode/locks/codes/") {
		panic("injected panic locking " + name)
	}
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

// For unlimited, a storage that fails costs the cache, not the answer;
// the faults are logged without flooding, and the cache works again once
// it recovers.
func TestStorageFaults(t *testing.T) {
	fake := newFake(t)
	root := t.TempDir()
	s := startSite(t, fake, "", wxBlock(fake, "/u", "api unlimited\nscene broken\npage pages/item/item\nmemory_cache off\nstorage wxqrcode_test_faulty {\n\troot "+root+"\n}"))
	storageBroken.Store(true)
	t.Cleanup(func() { storageBroken.Store(false) })
	for range 10 {
		resp, body := s.get("/u")
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if fake.CodeCalls() != 10 || fake.TokenCalls() != 1 {
		t.Errorf("%d code and %d token calls with a broken storage, want 10 and 1", fake.CodeCalls(), fake.TokenCalls())
	}
	storageBroken.Store(false)
	resp, body := s.get("/u")
	assertImage(t, resp, body, "image/jpeg", 430)
	waitCached(t, root, 1)
	resp, body = s.get("/u")
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

// A storage that cannot say whether a code is cached costs the cache, not
// the answer: for qrcode and wxacode too, the code is asked again (WeChat
// counts identical parameters once, so the budget is not spent again) and
// kept in memory; a total cap whose counts cannot be read still fails
// closed.
func TestStorageReadFaultLifetimeAPIs(t *testing.T) {
	fake := newFake(t)
	root := t.TempDir()
	storage := "\nstorage wxqrcode_test_faulty {\n\troot " + root + "\n}"
	blocks := func(mem string) string {
		return qrBlock(fake, "allow pages/a pages/b"+mem+storage) +
			wxBlock(fake, "/wxa", "api wxacode\nallow pages/a"+mem+storage) +
			wxBlock(fake, "/capped", "api wxacode\ncap 100\nallow pages/c"+mem+storage)
	}
	s := startSite(t, fake, "", blocks("\nmemory_cache off"))
	resp, body := s.get("/qr?path=pages/a")
	assertImage(t, resp, body, "image/jpeg", 430)
	waitCached(t, root, 1)
	// The same storage, with a memory cache that has not seen the code.
	s = startSite(t, fake, "", blocks(""))
	storageBroken.Store(true)
	t.Cleanup(func() { storageBroken.Store(false) })
	for _, uri := range []string{"/qr?path=pages/a", "/qr?path=pages/b", "/wxa?path=pages/a", "/qr?path=pages/a", "/wxa?path=pages/a"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if n := fake.CodeCalls(); n != 4 {
		t.Errorf("%d code calls, want 4: pages/a asked again once, then served from memory", n)
	}
	if n := fake.Generated(); n != 3 {
		t.Errorf("WeChat counted %d codes, want 3: asking again for qrcode pages/a is free", n)
	}
	resp, body = s.get("/capped?path=pages/c")
	assertError(t, resp, body, http.StatusServiceUnavailable, 990500)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("a cap that cannot be read: no Retry-After")
	}
	storageBroken.Store(false)
	resp, body = s.get("/capped?path=pages/c")
	assertImage(t, resp, body, "image/jpeg", 430)
	logs, err := os.ReadFile(filepath.Join(logDir, t.Name()+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "reading the cache; fetching the code") {
		t.Error("the storage fault is not in the log")
	}
}

// A panic in the work the module runs apart from requests (a fetch, a
// store) ends that work, not Caddy: it is logged with the code's key, a
// panicked fetch is answered 502, and the next request is served.
func TestPanicsRecovered(t *testing.T) {
	fake := newFake(t)
	root := t.TempDir()
	s := startSite(t, fake, "", wxBlock(fake, "/u", "api unlimited\nscene {query.s}\npage pages/item/item\ncap 100 per 1m\nstorage wxqrcode_test_faulty {\n\troot "+root+"\n}"))
	lockPanics.Store(true)
	t.Cleanup(func() { lockPanics.Store(false) })
	resp, body := s.get("/u?s=a")
	assertError(t, resp, body, http.StatusBadGateway, 990500)
	lockPanics.Store(false)
	storePanics.Store(true)
	t.Cleanup(func() { storePanics.Store(false) })
	resp, body = s.get("/u?s=b")
	assertImage(t, resp, body, "image/jpeg", 430)
	storePanics.Store(false)
	resp, body = s.get("/u?s=a")
	assertImage(t, resp, body, "image/jpeg", 430)
	waitCached(t, root, 1)
	logs, err := os.ReadFile(filepath.Join(logDir, t.Name()+".log"))
	if err != nil {
		t.Fatal(err)
	}
	var panics int
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, "panic while making a code") {
			panics++
			if !regexp.MustCompile(`"key":"[0-9a-f]{64}"`).MatchString(line) {
				t.Errorf("a panic logged without the code's key: %s", line)
			}
		}
	}
	if panics != 2 {
		t.Errorf("%d panics logged, want 2", panics)
	}
	if !strings.Contains(string(logs), "injected panic locking") || !strings.Contains(string(logs), "injected panic storing") {
		t.Error("the log does not say what panicked")
	}
}

// A cache_dir that cannot be written, here under a regular file, still
// serves codes of unlimited, whose codes spend no budget.
func TestUnwritableCacheDir(t *testing.T) {
	fake := newFake(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSite(t, fake, "", wxBlock(fake, "/u", "api unlimited\nscene nowhere\npage pages/item/item\nmemory_cache off\ncache_dir "+filepath.Join(file, "cache")))
	for range 3 {
		resp, body := s.get("/u")
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if n := fake.CodeCalls(); n != 3 {
		t.Errorf("%d code calls, want 3: nothing can be cached", n)
	}
}
