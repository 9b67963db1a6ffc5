package wxqrcode_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// TestTwoInstancesOneStorage runs two Caddy processes on one storage, as
// two instances of a cluster behind a load balancer.
func TestTwoInstancesOneStorage(t *testing.T) {
	fake := newFake(t)
	// Long enough for the first part; the wait for its expiry is what is
	// left of it after that.
	const ttl = 4 * time.Second
	fake.SetTokenTTL(ttl)
	sites := startCluster(t, 2, qrBlock(fake, "allow *\ncap 100000"))

	// 100 concurrent requests for one new code, split across both.
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Delay: 300 * time.Millisecond}, 1)
	var wg sync.WaitGroup
	bodies := make([][]byte, 100)
	for i := range bodies {
		wg.Go(func() {
			resp, err := http.Get(sites[i%2].url + "/qr?path=pages/item/item%3Fid%3D1")
			if err == nil {
				defer resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					bodies[i], _ = readAll(resp)
				}
			}
		})
	}
	wg.Wait()
	// The token was issued during the burst, so it has expired by then.
	expired := time.Now().Add(ttl + 100*time.Millisecond)
	for i, b := range bodies {
		if len(b) == 0 || !bytes.Equal(b, bodies[0]) {
			t.Fatalf("request %d failed or got another image", i)
		}
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Fatalf("%d code calls for 100 requests across two instances, want 1", n)
	}
	for _, s := range sites {
		resp, body := s.get("/qr?path=pages/item/item%3Fid%3D1")
		assertImage(t, resp, body, "image/jpeg", 430)
	}

	// New codes on both instances share the one token...
	for i := range 6 {
		resp, body := sites[i%2].get(fmt.Sprintf("/qr?path=pages/new/%d", i))
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if n := fake.TokenCalls(); n != 1 {
		t.Fatalf("%d token calls before the token nears expiry, want 1", n)
	}
	// ...and once it has expired, one instance fetches the next for both.
	time.Sleep(time.Until(expired))
	for i := range 6 {
		resp, body := sites[i%2].get(fmt.Sprintf("/qr?path=pages/later/%d", i))
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	if n := fake.TokenCalls(); n != 2 {
		t.Errorf("%d token calls after expiry, want 2", n)
	}
	if n := fake.CodeCalls(); n != 13 {
		t.Errorf("%d code calls, want 13", n)
	}
}

// A lock left by a crashed instance does not block its code for ever: the
// file_system storage takes a lock not refreshed for 10 s as stale.
func TestStaleLockOfCrashedInstance(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000")
	canonical := url.Values{"api": {"qrcode"}, "appid": {testAppID}, "path": {"pages/crashed"}}.Encode()
	sum := sha256.Sum256([]byte(canonical))
	lock := certmagic.StorageKeys.Safe("wxqrcode/locks/codes/" + hex.EncodeToString(sum[:]))
	lockFile := filepath.Join(s.dir, "locks", lock+".lock")
	if err := os.MkdirAll(filepath.Dir(lockFile), 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	if err := os.WriteFile(lockFile, []byte(`{"created":"`+old+`","updated":"`+old+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, body := s.get("/qr?path=pages/crashed")
	assertImage(t, resp, body, "image/jpeg", 430)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a stale lock held the code for %v", d)
	}
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}
