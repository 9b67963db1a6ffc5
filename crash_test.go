package wxqrcode_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// TestKilledMidBurst kills Caddy with SIGKILL during a burst of misses:
// after a restart, every entry in the storage is a whole image of the
// right code.
func TestKilledMidBurst(t *testing.T) {
	fake := newFake(t)
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Delay: 20 * time.Millisecond}, 0)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	port := freePort(t)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile(t, port, data, qrBlock(fake, "allow *\ncap 100000"))), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := startProcess(t, dir, base+"/", nil, "run", "--config", cfg)

	const codes = 400
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= codes; i = next.Add(1) {
				resp, err := http.Get(fmt.Sprintf("%s/qr?path=pages/burst/%d", base, i))
				if err != nil {
					return // killed
				}
				resp.Body.Close()
			}
		})
	}
	// Kill once some codes are stored, whatever the machine's speed.
	deadline := time.Now().Add(10 * time.Second)
	for len(cachedFiles(t, data)) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.kill()
	wg.Wait()

	startProcess(t, dir, base+"/", nil, "run", "--config", cfg)
	files := cachedFiles(t, data)
	if len(files) == 0 || len(files) >= codes {
		t.Fatalf("%d entries: the kill did not land mid-burst", len(files))
	}
	t.Logf("%d of %d codes were stored before the kill", len(files), codes)
	direct := &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NewReuseTokenSource(
		&wechat.StableTokenSource{Credentials: wechat.Credentials{BaseURL: fake.URL, AppID: testAppID, Secret: testSecret}})}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, img, _ := bytes.Cut(raw, []byte("\n"))
		var meta struct {
			SHA256  string `json:"sha256"`
			Request string `json:"request"`
		}
		if err := json.Unmarshal(head, &meta); err != nil {
			t.Fatalf("%s: bad header: %v", f, err)
		}
		sum := sha256.Sum256(img)
		if hex.EncodeToString(sum[:]) != meta.SHA256 {
			t.Fatalf("%s: the image is not the one that was written", f)
		}
		if _, _, err := image.Decode(bytes.NewReader(img)); err != nil {
			t.Fatalf("%s: not a whole image: %v", f, err)
		}
		req, err := url.ParseQuery(meta.Request)
		if err != nil {
			t.Fatal(err)
		}
		want, err := direct.CreateQRCode(context.Background(), &wechat.QRCodeRequest{Path: req.Get("path"), Width: wechat.MaxWidth})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img, want.Data) {
			t.Fatalf("%s: the image is not the code of %s", f, req.Get("path"))
		}
	}
}

// TestReloadUnderLoad reloads the config while requests, hits and misses,
// keep coming: no answer is an error. Caddy's listener handover may reset
// a connection during a reload, for any handler: the test sends the same
// load to a respond route beside it and reports both.
func TestReloadUnderLoad(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	port, admin := freePort(t), freePort(t)
	configs := make([]string, 2)
	for i := range configs {
		text := caddyfile(t, port, filepath.Join(dir, "data"), qrBlock(fake, fmt.Sprintf("allow *\ncap 100000\ntimeout %ds", 9+i))+"\n\trespond /ping pong\n")
		text = strings.Replace(text, "\tadmin off\n", fmt.Sprintf("\tadmin 127.0.0.1:%d\n", admin), 1)
		configs[i] = filepath.Join(dir, fmt.Sprintf("Caddyfile%d", i))
		if err := os.WriteFile(configs[i], []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	startProcess(t, dir, base+"/", nil, "run", "--config", configs[0])

	stop := make(chan struct{})
	var served, refused atomic.Int64
	var dropped [2]atomic.Int64 // connections lost: wxqrcode, respond
	var firstRefusal atomic.Value
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path := fmt.Sprintf("/qr?path=pages/hot/%d", i%10)
				if i%3 == 0 {
					path = fmt.Sprintf("/qr?path=pages/new/%d/%d", w, i)
				}
				route := i % 2
				if route == 1 {
					path = "/ping"
				}
				resp, err := http.Get(base + path)
				if err != nil {
					dropped[route].Add(1)
					continue
				}
				body, _ := readAll(resp)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					refused.Add(1)
					firstRefusal.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s", path, resp.StatusCode, body))
					continue
				}
				served.Add(1)
			}
		})
	}
	// Each reload comes after at least 30 more answers, however slow the
	// machine, so the reloads always happen under load.
	waitServed := func(n int64) {
		deadline := time.Now().Add(60 * time.Second)
		for served.Load() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if served.Load() < n {
			t.Fatalf("only %d answers within a minute, want %d", served.Load(), n)
		}
	}
	for i := range 4 {
		waitServed(served.Load() + 30)
		out, err := exec.Command(builtCaddy(t), "reload", "--config", configs[(i+1)%2], "--address", fmt.Sprintf("127.0.0.1:%d", admin)).CombinedOutput()
		if err != nil {
			t.Fatalf("reload %d: %v\n%s", i, err, out)
		}
	}
	waitServed(served.Load() + 30)
	close(stop)
	wg.Wait()
	t.Logf("%d answered 200 across 4 reloads; connections lost: %d to wxqrcode, %d to respond",
		served.Load(), dropped[0].Load(), dropped[1].Load())
	if refused.Load() != 0 {
		t.Errorf("%d answers were errors; first: %v", refused.Load(), firstRefusal.Load())
	}
	if lost := dropped[0].Load() + dropped[1].Load(); lost*100 > served.Load() {
		t.Errorf("%d connections lost for %d answers", lost, served.Load())
	}
	if n := fake.TokenCalls(); n != 1 {
		t.Errorf("%d token calls across reloads, want 1", n)
	}
}
