package wxqrcode

import (
	"sync/atomic"
	"time"
)

// handlerClock is a handler's time, which everything that keeps time against
// codes reads: when a code was stored, when a temporary one is renewed,
// its Cache-Control, the expired codes a ledger removes. One clock per
// handler, passed down, so that tests can move a running handler's time
// (export_test.go) without a package-level hook; atomic, so that moving
// it races no request.
type handlerClock struct {
	now atomic.Pointer[func() time.Time]
}

// newClock is a clock that keeps real time.
func newClock() *handlerClock {
	c := new(handlerClock)
	c.set(time.Now)
	return c
}

func (c *handlerClock) set(now func() time.Time) { c.now.Store(&now) }

// Now is the clock's time.
func (c *handlerClock) Now() time.Time { return (*c.now.Load())() }
