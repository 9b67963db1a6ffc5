package wxqrcode

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// A fetch that finds every slot for a call taken for its whole timeout is
// refused with 503 990503 and makes no call.
func TestFetchesInFlightBounded(t *testing.T) {
	t.Parallel()
	h := &Handler{
		pending:  new(sync.WaitGroup),
		cache:    &codeCache{storage: &certmagic.FileStorage{Path: t.TempDir()}},
		timeout:  100 * time.Millisecond,
		logger:   zap.NewNop(),
		faults:   newFaultLog(zap.NewNop()),
		inFlight: semaphore.NewWeighted(1),
		quota:    &quota{},
	}
	if !h.inFlight.TryAcquire(1) { // the one slot, busy elsewhere
		t.Fatal("slot taken")
	}
	called := false
	cr := &codeRequest{
		api:  apiQRCode,
		key:  cacheKey("api=qrcode&path=x"),
		call: func(context.Context, *wechat.Client) (*wechat.Image, error) { called = true; return nil, nil },
	}
	_, err := h.fetch(context.Background(), cr)
	p, ok := err.(*problem)
	if !ok || p.status != http.StatusServiceUnavailable || p.code != codeBusy || p.retryAfter != 5*time.Second {
		t.Fatalf("%v, want 503 %d with Retry-After", err, codeBusy)
	}
	if called {
		t.Error("WeChat was called without a slot")
	}
	h.pending.Wait()
}
