package wxqrcode

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"go.uber.org/zap"
)

// Link codes are drawn through the draws' one bound: past the slots and
// their queue, a draw is refused at once with 503 990503.
func TestLinkDrawBounded(t *testing.T) {
	h := &Handler{logger: zap.NewNop(), clock: newClock()}
	cr := &codeRequest{api: apiLink, link: "https://shop.example.com/q/1", canonical: "api=link&appid=&url=x", key: "k", width: 430}
	drawing.Add(maxDrawing)
	_, _, err := h.drawn(context.Background(), cr)
	drawing.Add(-maxDrawing)
	var p *problem
	if !errors.As(err, &p) || p.status != http.StatusServiceUnavailable || p.code != codeBusy {
		t.Fatalf("%v, want 503 %d", err, codeBusy)
	}
	if e, _, err := h.drawn(context.Background(), cr); err != nil || e.contentType != "image/png" {
		t.Errorf("with the bound free: %v", err)
	}
}
