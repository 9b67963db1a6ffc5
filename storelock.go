package wxqrcode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// storeLock is a lock named in a storage: every instance sharing the
// storage takes the same one, so that only one of them does the work it
// guards (fetch a code, a token, write a count).
type storeLock struct {
	storage certmagic.Storage
	name    string
	faults  *faultLog
}

// lock takes the lock, waiting at most wait, and returns what releases
// it. A waiter that gives up rather than waiting for ever lets a stuck
// holder cost a fetch, not a request. The release outlives ctx, which may
// be done by then, and logs a failure: another instance then waits for
// the storage to take the lock as stale.
func (l storeLock) lock(ctx context.Context, wait time.Duration) (unlock func(), err error) {
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := l.storage.Lock(lctx, l.name); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errNotLocked, l.name, err)
	}
	return func() {
		if err := l.storage.Unlock(context.WithoutCancel(ctx), l.name); err != nil {
			l.faults.warn("unlocking a storage lock", zap.String("lock", l.name), zap.Error(err))
		}
	}, nil
}

// errNotLocked marks a lock that could not be taken.
var errNotLocked = errors.New("cannot take the storage lock")

// lockedDo takes l within wait, then returns what recheck (if not nil)
// finds if another holder did the work while this one waited; else it
// returns act's result. It unlocks at the end. If the lock cannot be taken, it
// returns an errNotLocked, and the caller decides whether to act without
// the lock.
func lockedDo[T any](ctx context.Context, l storeLock, wait time.Duration, recheck func() (T, bool), act func() (T, error)) (T, error) {
	unlock, err := l.lock(ctx, wait)
	if err != nil {
		var zero T
		return zero, err
	}
	defer unlock()
	if recheck != nil {
		if v, ok := recheck(); ok {
			return v, nil
		}
	}
	return act()
}
