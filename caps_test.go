package wxqrcode_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

func TestCapPerWindow(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000\ncap 2 per 1h")
	// A call that generates nothing does not count.
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: 45011}, 1)
	if resp, _ := s.get("/qr?path=x"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want WeChat's 429", resp.StatusCode)
	}
	for _, p := range []string{"a", "b", "a", "b"} { // two new codes, two hits
		resp, body := s.get("/qr?path=" + p)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	resp, body := s.get("/qr?path=c")
	assertError(t, resp, body, http.StatusTooManyRequests, 990429)
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 || n > 3600 {
		t.Errorf("Retry-After %q, want 1..3600", resp.Header.Get("Retry-After"))
	}
	if resp, _ := s.get("/qr?path=a"); resp.StatusCode != http.StatusOK {
		t.Errorf("a cached code is served whatever the cap: %d", resp.StatusCode)
	}
	if n := fake.CodeCalls(); n != 3 {
		t.Errorf("%d code calls, want 3 (one failed, two new codes)", n)
	}
}

// A total cap holds across a restart and across handlers sharing a storage.
func TestBudgetAcrossRestartAndInstances(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	directives := wxBlock(fake, "/one", "cap 3") + wxBlock(fake, "/two", "api wxacode\ncap 3") +
		wxBlock(fake, "/u", "api unlimited\ncap 3")
	s := startSite(t, fake, dir, directives)
	for _, uri := range []string{"/one?path=a", "/two?path=b", "/one?path=c", "/u?scene=1", "/u?scene=2"} {
		if resp, body := s.get(uri); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", uri, resp.StatusCode, body)
		}
	}
	resp, body := s.get("/two?path=d")
	assertError(t, resp, body, http.StatusForbidden, 990421)

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	s = startSite(t, fake, dir, directives)
	resp, body = s.get("/one?path=e")
	assertError(t, resp, body, http.StatusForbidden, 990421)
	if resp, _ := s.get("/one?path=a"); resp.StatusCode != http.StatusOK {
		t.Errorf("a cached code after the restart: %d", resp.StatusCode)
	}
	if resp, _ := s.get("/u?scene=3"); resp.StatusCode != http.StatusOK {
		t.Errorf("unlimited codes have their own count: %d", resp.StatusCode)
	}
	resp, body = s.get("/u?scene=4")
	assertError(t, resp, body, http.StatusForbidden, 990421)
	if n := fake.CodeCalls(); n != 6 {
		t.Errorf("%d code calls, want 6", n)
	}
	if fake.Generated() != 3 {
		t.Errorf("WeChat generated %d limited codes, want 3", fake.Generated())
	}
}

// A cap alone (without allow) opts a limited API in; a rate cap does not.
func TestCapOptIn(t *testing.T) {
	for _, tc := range []struct {
		opts string
		ok   bool
	}{{"cap 100", true}, {"cap 10 per 1m", false}, {"sign_key 0123456789abcdef", true}} {
		_, err := adapt(fmt.Sprintf("http://127.0.0.1:1 {\n\twxqrcode {\n\t\tappid wx1\n\t\tsecret s\n\t\t%s\n\t}\n}\n", tc.opts))
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.opts, err, tc.ok)
		}
	}
}

// A call whose outcome is unknown (the connection broke) may have made a
// code: it stays counted. A refusal from WeChat is given back.
func TestBudgetKeepsUnknownOutcomes(t *testing.T) {
	s, fake := qrSite(t, "cap 2")
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: 45011}, 1)
	if resp, _ := s.get("/qr?path=refused"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want WeChat's 429", resp.StatusCode)
	}
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Reset: true}, 0)
	if resp, _ := s.get("/qr?path=broken"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	fake.ClearFaults()
	resp, body := s.getOK("/qr?path=new")
	assertImage(t, resp, body, "image/jpeg", 430)
	resp, body = s.get("/qr?path=newer")
	assertError(t, resp, body, http.StatusForbidden, 990421)
}

// Two instances on one storage share a total cap under a burst of new
// codes: never more than the cap is generated, between them, the rest are
// refused as the budget spent, and no code of the cap is lost. The burst lasts a few seconds (4 clients
// per instance, WeChat taking 300 ms a call), longer than the second that
// the file_system storage lets a lock waiter sleep, so that both
// instances lease from the count.
func TestClusterCapExact(t *testing.T) {
	fake := newFake(t)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Delay: 300 * time.Millisecond}, 0)
	sites := startCluster(t, 2, qrBlock(fake, "allow *\ncap 50"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	served := map[int]int{}
	statuses := map[string]int{}
	requests := make(chan int)
	for w := range 8 {
		wg.Go(func() {
			for i := range requests {
				resp, err := http.Get(fmt.Sprintf("%s/qr?path=pages/burst/%d", sites[w%2].url, i))
				if err != nil {
					t.Error(err)
					continue
				}
				body, _ := readAll(resp)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusOK:
					served[w%2]++
				case resp.StatusCode == http.StatusForbidden && bytes.Contains(body, []byte(`"errcode":990421`)):
					statuses["403 990421"]++
				default:
					statuses[fmt.Sprintf("%d %s", resp.StatusCode, body)]++
				}
				mu.Unlock()
			}
		})
	}
	for i := range 200 {
		requests <- i
	}
	close(requests)
	wg.Wait()
	burst := served[0] + served[1]
	if burst > 50 || burst < 45 || served[0] == 0 || served[1] == 0 {
		t.Errorf("served %d and %d new codes, want at most 50 between them, some each", served[0], served[1])
	}
	if statuses["403 990421"] != 200-burst || len(statuses) != 1 {
		t.Errorf("refusals %v, want %d times 403 990421", statuses, 200-burst)
	}
	// An instance may still hold a few codes of its lease when the other
	// finds the count spent: they are served by the instance holding them.
	for i := range 20 {
		resp, body := sites[i%2].get(fmt.Sprintf("/qr?path=pages/after/%d", i))
		if resp.StatusCode == http.StatusOK {
			burst++
		} else {
			assertError(t, resp, body, http.StatusForbidden, 990421)
		}
	}
	if burst != 50 || fake.Generated() != 50 || fake.CodeCalls() != 50 {
		t.Errorf("%d codes served; WeChat generated %d codes in %d calls; want 50", burst, fake.Generated(), fake.CodeCalls())
	}
}

// A per-visitor cap counts the new codes of each visitor apart; hits
// never count; visitors without the header share one count.
func TestCapPerVisitor(t *testing.T) {
	s, fake := qrSite(t, "allow *\ncap 100000\ncap 2 per 1h by {header.X-User}")
	for _, user := range []string{"ann", "bob"} {
		for _, p := range []string{"a", "b", "a", "b"} { // two new codes, then hits
			resp, body := s.get("/qr?path="+user+"/"+p, "X-User", user)
			assertImage(t, resp, body, "image/jpeg", 430)
		}
		resp, body := s.get("/qr?path="+user+"/c", "X-User", user)
		assertError(t, resp, body, http.StatusTooManyRequests, 990429)
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 || n > 3600 {
			t.Errorf("Retry-After %q, want 1..3600", resp.Header.Get("Retry-After"))
		}
		// Another visitor's code, already made, is a hit.
		resp, body = s.get("/qr?path=ann/a", "X-User", user)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	for _, p := range []string{"x", "y"} {
		resp, body := s.get("/qr?path=anon/" + p)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	resp, body := s.get("/qr?path=anon/z")
	assertError(t, resp, body, http.StatusTooManyRequests, 990429)
	if n := fake.CodeCalls(); n != 6 {
		t.Errorf("%d code calls, want 6", n)
	}
}
