package wxqrcode

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
	"github.com/wxqrcode/caddy-wxqrcode/internal/imaging"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// The outcomes of a lookup, for metrics.
const (
	outcomeMemoryHit  = "memory_hit"
	outcomeStorageHit = "storage_hit"
	// outcomeRendered is a width drawn now from a cached master.
	outcomeRendered = "rendered"
	outcomeMiss     = "miss"
)

// sized returns the code at the requested width: a width rendered
// before from memory, else the master, as it is when it has that width,
// or rendered from it. Rendered widths stay in the memory cache only: the
// master renders them again at no cost but CPU.
func (h *Handler) sized(ctx context.Context, cr *codeRequest) (*entry, string, error) {
	// A URL-encoded canonical has no #, so no master has this key.
	key := cr.canonical + "#" + strconv.Itoa(cr.width) + h.style.suffix()
	if h.mem != nil {
		if e, ok := h.mem.width(key, h.clock); ok {
			return e, outcomeMemoryHit, nil
		}
	}
	master, outcome, err := h.lookup(ctx, cr)
	// An official account's master is a PNG at level M: another style
	// is drawn from its content at every width.
	if err != nil || (master.width == cr.width && h.style.plain()) {
		return master, outcome, err
	}
	e, err := drawOnce(ctx, h.logger, h.storeID+"|"+key, cr.key, outcome == outcomeMiss, func(rctx context.Context) (*entry, error) {
		return h.renderWidth(rctx, cr, master, key)
	})
	if err != nil {
		return nil, "", err
	}
	if outcome != outcomeMiss {
		outcome = outcomeRendered
	}
	return e, outcome, nil
}

// renderWidth draws the width of master that key names, and keeps it in
// memory.
func (h *Handler) renderWidth(ctx context.Context, cr *codeRequest, master *entry, key string) (*entry, error) {
	return h.drawInMemory(ctx, key, func() (*entry, error) {
		start := time.Now()
		e, err := render(master, cr.width, h.style)
		if err != nil {
			return nil, err
		}
		h.logger.Debug("rendered width",
			zap.String("api", cr.api),
			zap.String("key", cr.key),
			zap.Int("width", cr.width),
			zap.Int("bytes", len(e.data)),
			zap.Duration("duration", time.Since(start)))
		return e, nil
	})
}

// lookup returns the code from memory, from the storage, or fetched:
// once per key however many requests wait. The fetch runs apart from the
// request, so a client that gives up does not waste a call already paid
// for.
func (h *Handler) lookup(ctx context.Context, cr *codeRequest) (*entry, string, error) {
	if h.mem != nil {
		if e, ok := h.mem.master(cr.canonical, h.clock); ok {
			return e, outcomeMemoryHit, nil
		}
	}
	e, err := h.cache.load(ctx, cr.key, h.clock)
	if err != nil {
		// Asking again for a code that may be stored spends no budget:
		// WeChat counts identical parameters once, and the master is
		// always asked with the same ones. The fault costs a call.
		h.faults.warn("reading the cache; fetching the code", zap.String("key", cr.key), zap.Error(err))
	}
	if e != nil {
		h.logger.Debug("cache hit", zap.String("api", cr.api), zap.String("key", cr.key))
		h.remember(cr, e)
		return e, outcomeStorageHit, nil
	}
	giveBack, err := h.capSet.TakeVisitor(cr.visitors)
	if err != nil {
		return nil, "", err
	}
	e, err = h.fetchShared(ctx, cr)
	if err != nil {
		giveBack()
		return nil, "", err
	}
	h.remember(cr, e)
	return e, outcomeMiss, nil
}

func (h *Handler) remember(cr *codeRequest, e *entry) {
	if h.mem != nil {
		h.mem.masters.Set(cr.canonical, e)
	}
}

// maxWaiting bounds the requests of one handler waiting for new codes,
// their own or another's; more are answered 503 990503 at once.
const maxWaiting = 1024

// fetchShared waits for the code's fetch in flight, or admits a new one
// and starts it: a spent cap, a full window or no free slot answer here,
// before any storage lock or goroutine.
func (h *Handler) fetchShared(ctx context.Context, cr *codeRequest) (*entry, error) {
	if h.waiting.Add(1) > maxWaiting {
		h.waiting.Add(-1)
		return nil, busyProblem()
	}
	defer h.waiting.Add(-1)
	key := h.storeID + "|" + cr.key
	c, leader := flights.join(key, nil)
	if leader {
		adm, err := h.admit(ctx)
		if err != nil {
			flights.finish(key, c, nil, err)
			return nil, err
		}
		// Cleanup waits for this fetch, its call and its writes.
		h.pending.Add(1)
		go func() {
			defer h.pending.Done()
			e, err := protect(h.logger, cr.key, func() (*entry, error) {
				return h.fetch(context.WithoutCancel(ctx), cr, adm)
			})
			if err != nil {
				adm.release()
			}
			flights.finish(key, c, e, err)
		}()
	}
	return flights.wait(ctx, key, c)
}

// admission is what a fetch was admitted with: a code from every cap,
// until the call is counted, and a slot among the fetches in flight,
// until the code is stored.
type admission struct {
	h            *Handler
	res          caps.Reservation
	counted      bool
	slotReleased bool
}

// counted marks the reservation settled by the call.
func (a *admission) settled() { a.counted = true }

// done gives back the slot.
func (a *admission) done() {
	if !a.slotReleased {
		a.slotReleased = true
		a.h.inFlight.Release(1)
	}
}

// release gives back the codes reserved, unless the call counted them,
// and the slot.
func (a *admission) release() {
	if !a.counted {
		a.counted = true
		a.h.capSet.Release(a.res)
	}
	a.done()
}

// admit takes a code from every cap, answered from memory when one is
// spent or full, then a slot among the calls in flight, both within
// timeout.
func (h *Handler) admit(ctx context.Context) (*admission, error) {
	wctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	res, err := h.capSet.Reserve(wctx)
	if err != nil {
		return nil, err
	}
	if err := h.inFlight.Acquire(wctx, 1); err != nil {
		h.capSet.Release(res)
		return nil, busyProblem()
	}
	return &admission{h: h, res: res}, nil
}

// fetch asks WeChat for the code it was admitted for, and caches it. The
// storage's lock for the key makes instances sharing the storage call
// once between them: whoever waited for the lock finds the code cached,
// and gives back what it was admitted with. The answer does not wait for
// the storage: the image is stored and the lock released after it, still
// before another instance can take the lock; the code is counted in
// memory and written with the caps' next flush. A storage that fails to
// lock or write costs the cache, not the answer.
func (h *Handler) fetch(ctx context.Context, cr *codeRequest, adm *admission) (*entry, error) {
	unlock, cached := h.lockCode(ctx, cr)
	if cached != nil {
		unlock()
		adm.release()
		return cached, nil
	}
	e, err := h.callWeChat(ctx, cr, adm)
	if err != nil {
		unlock()
		return nil, err
	}
	// The slot is held until the code is stored, so that stores waiting
	// for the storage are bounded too.
	h.pending.Add(1)
	go func() {
		defer h.pending.Done()
		defer adm.done()
		defer unlock()
		_, _ = protect(h.logger, cr.key, func() (struct{}, error) {
			h.storeCode(ctx, cr, e)
			return struct{}{}, nil
		})
	}()
	return e, nil
}

// lockCode takes the code's storage lock and looks in the cache again
// under it, returning the code if another holder stored it meanwhile. A
// corrupt entry is removed, to be fetched again. Without the lock, the
// code is fetched all the same.
func (h *Handler) lockCode(ctx context.Context, cr *codeRequest) (unlock func(), cached *entry) {
	lock := storeLock{storage: h.cache.storage, name: layout.codeLock(cr.key), faults: h.faults}
	// Wait longer than a holder may hold the lock, so as not to fetch the
	// code again beside it.
	unlock, err := lock.lock(ctx, h.lockHold()+lockMargin)
	if err != nil {
		h.faults.warn("locking a cache entry; fetching without the lock", zap.String("key", cr.key), zap.Error(err))
		return func() {}, nil
	}
	e, err := h.cache.load(ctx, cr.key, h.clock)
	if errors.Is(err, errCorrupt) {
		if err := h.cache.storage.Delete(ctx, layout.code(cr.key)); err != nil {
			h.faults.warn("removing a corrupt cache entry", zap.String("key", cr.key), zap.Error(err))
		}
	}
	return unlock, e
}

// callWeChat asks WeChat for the code and counts what it spent against
// the caps it was admitted by.
func (h *Handler) callWeChat(ctx context.Context, cr *codeRequest, adm *admission) (*entry, error) {
	start := time.Now()
	f, e, err := h.ask(ctx, cr)
	h.settle(adm.res, f, err)
	adm.settled()
	if err != nil {
		return nil, err
	}
	h.noteFetched(cr, f, e, time.Since(start))
	return e, nil
}

// fetched is what a call brought: the master's bytes as WeChat sent them,
// or what to draw them from, and what is known of the code.
type fetched struct {
	data []byte
	// numUsed is WeChat's Num-Used header, or -1 where it sent none.
	numUsed int
	// content is what the code encodes, when it is drawn here (an
	// official account's code, from its url).
	content string
	// expiry is when the code stops working; zero for codes that never do.
	expiry time.Time
}

// ask makes the call, within timeout, draws the code if WeChat sent what
// to draw it from, and checks that the master is a whole image.
func (h *Handler) ask(ctx context.Context, cr *codeRequest) (*fetched, *entry, error) {
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	f, err := h.call(cctx, cr)
	if err != nil {
		return nil, nil, err
	}
	if cr.wxaLink != nil {
		// A link is neither drawn nor an image.
		return f, linkEntry(f, h.clock.Now()), nil
	}
	// Drawing and checking (a whole decode) are CPU work, in the draws'
	// slots, so that a flood of new codes cannot take the CPUs from cached
	// ones. The code is paid for: it waits for a slot rather than be
	// refused.
	if err := drawSlots.Acquire(ctx, 1); err != nil {
		return f, nil, err
	}
	defer drawSlots.Release(1)
	if f.data == nil {
		if f.data, err = imaging.DrawQR(f.content, masterWidth, imaging.LevelM); err != nil {
			return f, nil, err
		}
	}
	e, err := prepare(f, h.clock.Now())
	return f, e, err
}

// call asks WeChat for the code cr names.
func (h *Handler) call(ctx context.Context, cr *codeRequest) (*fetched, error) {
	var img *wechat.Image
	var err error
	switch {
	case cr.qrcode != nil:
		img, err = h.client.CreateQRCode(ctx, cr.qrcode)
	case cr.wxacode != nil:
		img, err = h.client.GetWxaCode(ctx, cr.wxacode)
	case cr.unlimited != nil:
		img, err = h.client.GetUnlimited(ctx, cr.unlimited)
	case cr.wxaLink != nil:
		return h.callLink(ctx, cr.wxaLink)
	default:
		return h.callOA(ctx, cr.oa)
	}
	if err != nil {
		return nil, err
	}
	return &fetched{data: img.Data, numUsed: img.NumUsed}, nil
}

// callOA asks qrcode.create for an official account's code: its url, to
// draw it from, and its life.
func (h *Handler) callOA(ctx context.Context, req *wechat.OACodeRequest) (*fetched, error) {
	start := h.clock.Now()
	code, err := h.client.CreateOACode(ctx, req)
	if err != nil {
		return nil, err
	}
	f := &fetched{numUsed: -1, content: code.URL}
	if !req.Permanent {
		// Counted from before the call, as WeChat counts, so never late.
		f.expiry = start.Add(time.Duration(code.ExpireSeconds) * time.Second)
	}
	return f, nil
}

// settle counts the call against the caps. Only WeChat's own refusal says
// no code was made; after a timeout or a broken reply it may have been,
// and stays counted.
func (h *Handler) settle(res caps.Reservation, f *fetched, err error) {
	var werr *wechat.Error
	switch {
	case err == nil:
		h.capSet.Settle(res, f.numUsed)
	case errors.As(err, &werr):
		h.capSet.Release(res)
	case len(res) > 0:
		h.capSet.Settle(res, -1)
	}
}

// noteFetched records a new code in the metrics and the log.
func (h *Handler) noteFetched(cr *codeRequest, f *fetched, e *entry, took time.Duration) {
	metrics.codesGenerated.WithLabelValues(cr.api).Inc()
	if f.numUsed >= 0 {
		metrics.numUsed.WithLabelValues(h.appID).Set(float64(f.numUsed))
	}
	h.logger.Info("fetched code",
		zap.String("api", cr.api),
		zap.String("key", cr.key),
		zap.Int("bytes", len(f.data)),
		zap.String("content_type", e.contentType),
		zap.Int("num_used", f.numUsed),
		zap.Duration("duration", took))
}

// lockMargin is what a waiter for a code's lock allows beyond lockHold.
const lockMargin = 5 * time.Second

// lockHold is the longest a fetch holds a code's storage lock: a timeout
// for a slot and the caps, one for the call and one for the store.
func (h *Handler) lockHold() time.Duration { return 3 * h.timeout }
