package wxqrcode

import (
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

// flightCall is one fetch and what it came to.
type flightCall struct {
	done chan struct{}
	e    *entry
	err  error
}

// flights is shared by every handler, so routes for the same app and the
// old and new handlers of a config reload also make one call per code.
var flights = &flightGroup{calls: map[string]*flightCall{}}

// join returns the fetch of key in flight, or a new one that the caller
// leads and must end with finish.
func (g *flightGroup) join(key string) (c *flightCall, leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[key]; c != nil {
		return c, false
	}
	c = &flightCall{done: make(chan struct{})}
	g.calls[key] = c
	return c, true
}

// finish ends the fetch of key with its outcome, for every caller that
// joined it.
func (g *flightGroup) finish(key string, c *flightCall, e *entry, err error) {
	g.mu.Lock()
	delete(g.calls, key)
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
