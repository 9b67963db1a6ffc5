package wxqrcode_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// max_stored bounds the codes a route keeps in its storage, removing the
// first stored, across a restart too; a removed code is asked again.
func TestMaxStored(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	block := wxBlock(fake, "/u/*", "api unlimited\nscene {path.1}\npage pages/item/item\ncap 1000 per 1m\nmemory_cache off\nmax_stored 5")
	s := startSite(t, fake, dir, block)
	for i := range 8 {
		storeNew(t, s, fmt.Sprintf("/u/c%d?width=1280", i))
		if n := len(cachedFiles(t, dir)); n != min(i+1, 5) {
			t.Fatalf("%d codes stored after %d, want %d", n, i+1, min(i+1, 5))
		}
	}
	s = startSite(t, fake, dir, block) // a restart on the same storage
	for i := 8; i < 11; i++ {
		storeNew(t, s, fmt.Sprintf("/u/c%d?width=1280", i))
	}
	if n := len(cachedFiles(t, dir)); n != 5 {
		t.Fatalf("%d codes stored after a restart, want 5", n)
	}
	before := fake.CodeCalls()
	for i := 6; i < 11; i++ {
		resp, _ := s.get(fmt.Sprintf("/u/c%d?width=1280", i))
		if got := resp.Header.Get("Cache-Status"); got != "wxqrcode; hit; detail=storage" {
			t.Errorf("code %d, among the last 5: Cache-Status %q", i, got)
		}
	}
	if n := fake.CodeCalls() - before; n != 0 {
		t.Errorf("%d calls for the 5 codes kept", n)
	}
	resp, body := s.get("/u/c0?width=1280")
	assertImage(t, resp, body, "image/jpeg", 1280)
	if n := fake.CodeCalls() - before; n != 1 {
		t.Errorf("%d calls for a removed code, want 1: it is asked again", n)
	}
}

// storeNew asks for a new code and waits until it is in the storage,
// where it is written just after the answer.
func storeNew(t *testing.T, s *site, uri string) {
	t.Helper()
	before := map[string]bool{}
	for _, f := range cachedFiles(t, s.dir) {
		before[f] = true
	}
	resp, body := s.get(uri)
	assertImage(t, resp, body, "image/jpeg", 1280)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, f := range cachedFiles(t, s.dir) {
			if !before[f] {
				return
			}
		}
	}
	t.Fatalf("%s: not stored", uri)
}

// Expired temporary codes are removed from the storage when the route
// stores another.
func TestExpiredTemporaryRemoved(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	s := startSite(t, fake, dir, wxBlock(fake, "/oa", "api oa_temporary\nexpire 60s\ncap 100 per 1m"))
	skew := skewClock(t, s)
	for _, scene := range []string{"a", "b", "c"} {
		resp, body := s.get("/oa?scene=" + scene)
		assertOACode(t, resp, body, 430, fake.OAURL(scene, false))
	}
	waitCached(t, dir, 3)
	skew.Store(int64(61 * time.Second))
	resp, body := s.get("/oa?scene=d")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	waitCached(t, dir, 1)
}

// Two instances sharing a storage keep one bound: a burst of new codes
// spread across both leaves exactly max_stored in the storage.
func TestMaxStoredCluster(t *testing.T) {
	fake := newFake(t)
	// One small master for every code: what is counted is the storage,
	// and drawing 100 real codes would load the machine, not the module.
	var master bytes.Buffer
	if err := jpeg.Encode(&master, image.NewGray(image.Rect(0, 0, 1280, 1280)), nil); err != nil {
		t.Fatal(err)
	}
	fake.Inject(wechattest.PathUnlimited, wechattest.Fault{Body: master.Bytes(), ContentType: "image/jpeg"}, 0)
	sites := startCluster(t, 2, wxBlock(fake, "/u/*", "api unlimited\nscene {path.1}\npage pages/item/item\ncap 1000 per 1m\nmax_stored 20"))
	// The most codes seen in the storage at once, sampled during the
	// burst under the ledger's lock, so that no code is removed during a
	// count: a directory walk is no snapshot.
	most := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	storage := &certmagic.FileStorage{Path: sites[0].dir}
	const ledgerLock = "wxqrcode/locks/stored/" + testAppID + "/unlimited"
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if err := storage.Lock(context.Background(), ledgerLock); err != nil {
					t.Error(err)
					return
				}
				most = max(most, len(cachedFiles(t, sites[0].dir)))
				_ = storage.Unlock(context.Background(), ledgerLock)
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	failures := map[string]int{}
	for i := range 100 {
		wg.Go(func() {
			resp, err := http.Get(fmt.Sprintf("%s/u/c%d?width=1280", sites[i%2].url, i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures[err.Error()]++
				return
			}
			body, _ := readAll(resp)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok++
			} else {
				failures[fmt.Sprintf("%d %s", resp.StatusCode, body)]++
			}
		})
	}
	wg.Wait()
	if ok != 100 {
		t.Fatalf("%d of 100 new codes served; failures %v", ok, failures)
	}
	// Stores end just after their answers.
	time.Sleep(500 * time.Millisecond)
	waitCached(t, sites[0].dir, 20)
	close(stop)
	<-sampled
	if most > 20 {
		t.Errorf("%d codes in the storage at once, want at most max_stored 20", most)
	}
	t.Logf("at most %d codes in the storage at once", most)
}
