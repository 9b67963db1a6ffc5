package wxqrcode

import (
	"context"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// A new code that finds every slot for a call taken for its whole timeout
// is refused with 503 990503 in its own request: no call, no storage lock.
func TestFetchesInFlightBounded(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	h := &Handler{
		pending:  new(sync.WaitGroup),
		cache:    &codeCache{storage: &certmagic.FileStorage{Path: root}},
		timeout:  100 * time.Millisecond,
		logger:   zap.NewNop(),
		faults:   newFaultLog(zap.NewNop()),
		inFlight: semaphore.NewWeighted(1),
		waiting:  new(atomic.Int64),
		capSet:   &caps.Set{},
		clock:    newClock(),
	}
	if !h.inFlight.TryAcquire(1) { // the one slot, busy elsewhere
		t.Fatal("slot taken")
	}
	fake := wechattest.NewServer("wx1", "secret")
	defer fake.Close()
	h.client = &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NoToken{}}
	cr := &codeRequest{api: apiQRCode, key: cacheKey("api=qrcode&path=x"), qrcode: &wechat.QRCodeRequest{Path: "x", Width: masterWidth}}
	_, err := h.fetchShared(context.Background(), cr)
	p, ok := err.(*problem)
	if !ok || p.status != http.StatusServiceUnavailable || p.code != codeBusy || p.retryAfter != 5*time.Second {
		t.Fatalf("%v, want 503 %d with Retry-After", err, codeBusy)
	}
	h.pending.Wait()
	if n := fake.CodeCalls(); n != 0 {
		t.Errorf("WeChat was called %d times without a slot", n)
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Errorf("the storage holds %d entries (%v), want none: no lock was taken", len(entries), err)
	}
}

// Past maxWaiting requests waiting for new codes, one more is refused at
// once, before it joins or starts anything.
func TestWaitersBounded(t *testing.T) {
	t.Parallel()
	h := &Handler{logger: zap.NewNop(), waiting: new(atomic.Int64)}
	h.waiting.Store(maxWaiting)
	_, err := h.fetchShared(context.Background(), &codeRequest{key: cacheKey("x")})
	if p, ok := err.(*problem); !ok || p.code != codeBusy {
		t.Fatalf("%v, want 503 %d", err, codeBusy)
	}
	if n := h.waiting.Load(); n != maxWaiting {
		t.Errorf("%d waiting after the refusal, want %d", n, maxWaiting)
	}
}
