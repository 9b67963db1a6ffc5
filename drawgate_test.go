package wxqrcode

import (
	"context"
	"errors"
	"image/color"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// A width nobody waits for any more is dropped while it waits for a
// slot: the visitor who asked and hung up costs no render.
func TestDrawNobodyWaitsForDropped(t *testing.T) {
	slots := drawSlotCount
	if err := drawSlots.Acquire(context.Background(), slots); err != nil {
		t.Fatal(err)
	}
	mem, err := newMemoryCache(DefaultMemoryCache)
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{logger: zap.NewNop(), mem: mem, clock: newClock()}
	master, err := prepare(&fetched{data: wechattest.RenderCode("pages/a", masterWidth, color.NRGBA{A: 0xff}, false), numUsed: -1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cr := &codeRequest{api: apiQRCode, canonical: "api=qrcode&path=pages%2Fa", width: 430}
	mem.masters.Set(cr.canonical, master)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := h.sized(ctx, cr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v, want the visitor's deadline", err)
	}
	drawSlots.Release(slots)
	for deadline := time.Now().Add(5 * time.Second); drawing.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the draw never ended")
		}
	}
	if _, ok := mem.width(cr.canonical+"#430", h.clock); ok {
		t.Error("the width was rendered for nobody")
	}
	if _, _, err := h.sized(context.Background(), cr); err != nil {
		t.Errorf("asked again: %v", err)
	}
	if _, ok := mem.width(cr.canonical+"#430", h.clock); !ok {
		t.Error("the width asked again was not rendered")
	}
}
