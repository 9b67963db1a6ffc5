package wxqrcode

import (
	"context"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
)

// Widths rendered from masters and official accounts' codes drawn anew
// share one bound on CPU: drawSlots run at once, half the CPUs (at least
// one), so that draws never take the CPUs that serve cached codes, and
// each holds a decoded master, a few megabytes, until it ends; twice as
// many more wait. Past both, a draw is refused at once with 503: a
// stranger asking many widths gets answers that cost nothing while
// visitors' codes are served.
var (
	drawSlotCount = max(1, int64(runtime.GOMAXPROCS(0))/2)
	drawSlots     = semaphore.NewWeighted(drawSlotCount)
	maxDrawing    = 3 * drawSlotCount // the slots and a queue of twice as many
	drawing       atomic.Int64
)

// enterDraw admits a draw into the slots or the queue, or refuses it. A
// draw for a code just fetched (paid) is never refused: it waits its turn,
// bounded by the fetches in flight.
func enterDraw(paid bool) error {
	if drawing.Add(1) > maxDrawing && !paid {
		drawing.Add(-1)
		p := localProblem(http.StatusServiceUnavailable, codeBusy, "wxqrcode: too many widths are being drawn at once; try again shortly")
		p.retryAfter = time.Second
		return p
	}
	return nil
}

// leaveDraw ends a draw that enterDraw admitted.
func leaveDraw() { drawing.Add(-1) }

// drawOnce runs draw for rkey once however many requests wait (renders),
// admitted by enterDraw, apart from the request: a draw nobody waits
// for any more is cancelled. paid is enterDraw's; logKey names the code
// in the log if the draw panics.
func drawOnce(ctx context.Context, logger *zap.Logger, rkey, logKey string, paid bool, draw func(context.Context) (*entry, error)) (*entry, error) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c, leader := renders.join(rkey, cancel)
	if !leader {
		cancel()
	} else if err := enterDraw(paid); err != nil {
		renders.finish(rkey, c, nil, err)
		cancel()
	} else {
		go func() {
			defer leaveDraw()
			defer cancel()
			e, err := protect(logger, logKey, func() (*entry, error) { return draw(rctx) })
			renders.finish(rkey, c, e, err)
		}()
	}
	return renders.wait(ctx, rkey, c)
}

// drawInMemory returns what key names from the widths' part of the memory
// cache (drawn by a flight that ended since the request looked), else
// draws it in a draw slot, queued until nobody waits (ctx), and keeps it
// there: widths and drawn codes never go to the storage.
func (h *Handler) drawInMemory(ctx context.Context, key string, draw func() (*entry, error)) (*entry, error) {
	if h.mem != nil {
		if e, ok := h.mem.width(key, h.clock); ok {
			return e, nil
		}
	}
	if err := drawSlots.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	defer drawSlots.Release(1)
	e, err := draw()
	if err != nil {
		return nil, err
	}
	if h.mem != nil {
		h.mem.widths.Set(key, e)
	}
	return e, nil
}
