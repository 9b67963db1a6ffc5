package wxqrcode

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"
)

// flightGroup joins the requests for one new code to one fetch, like
// singleflight, but tells each caller whether it leads before anything
// starts: the leader is admitted (caps, a slot) in its own request, so
// a refused code costs no goroutine and no storage lock.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

// flightCall is one piece of work and what it came to.
type flightCall struct {
	done chan struct{}
	e    *entry
	err  error
	// waiters are the callers waiting for it; when the last leaves,
	// cancel, if set, ends the work: nobody would get its result.
	waiters int
	cancel  context.CancelFunc
}

// flights and renders are shared by every handler, so routes for the
// same app and the old and new handlers of a config reload also make one
// call per code, and draw each width once.
var (
	flights = &flightGroup{calls: map[string]*flightCall{}}
	renders = &flightGroup{calls: map[string]*flightCall{}}
)

// join returns the work on key in flight, or a new one that the caller
// leads and must end with finish. cancel, for a new one, is what ends
// its work once nobody waits for it; nil keeps it going.
func (g *flightGroup) join(key string, cancel context.CancelFunc) (c *flightCall, leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[key]; c != nil {
		c.waiters++
		return c, false
	}
	c = &flightCall{done: make(chan struct{}), waiters: 1, cancel: cancel}
	g.calls[key] = c
	return c, true
}

// wait returns the outcome of c, or ctx's error if ctx ends first.
func (g *flightGroup) wait(ctx context.Context, key string, c *flightCall) (*entry, error) {
	select {
	case <-c.done:
		return c.e, c.err
	case <-ctx.Done():
		g.leave(key, c)
		return nil, ctx.Err()
	}
}

// leave counts a caller of c that stopped waiting; work nobody waits for
// any more is cancelled, and the next caller starts it anew.
func (g *flightGroup) leave(key string, c *flightCall) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if c.waiters == 0 && c.cancel != nil {
		c.cancel()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
	}
}

// finish ends the work on key with its outcome, for every caller that
// joined it.
func (g *flightGroup) finish(key string, c *flightCall, e *entry, err error) {
	g.mu.Lock()
	if g.calls[key] == c {
		delete(g.calls, key)
	}
	g.mu.Unlock()
	c.e, c.err = e, err
	close(c.done)
}

// errPanicked answers a request whose code's work panicked.
var errPanicked = localProblem(502, codeInternal, "wxqrcode: the code could not be made; the server's log says why")

// protect runs work, turning a panic into errPanicked logged with the
// code's key: a bug met by one code ends that code's work, not Caddy.
// Goroutines the module starts run their work through it.
func protect[T any](logger *zap.Logger, key string, work func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error("panic while making a code",
				zap.String("key", key),
				zap.String("panic", fmt.Sprint(r)),
				zap.ByteString("stack", debug.Stack()))
			err = errPanicked
		}
	}()
	return work()
}
