package wxqrcode

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Holders of one lock act one at a time, and a waiter finds the work of
// the holder before it done.
func TestLockedDoOnce(t *testing.T) {
	t.Parallel()
	lock := storeLock{storage: &certmagic.FileStorage{Path: t.TempDir()}, name: "test/once", faults: newFaultLog(zap.NewNop())}
	var mu sync.Mutex
	done, acts := false, 0
	recheck := func() (bool, bool) {
		mu.Lock()
		defer mu.Unlock()
		return true, done
	}
	act := func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		acts++
		done = true
		return false, nil
	}
	var wg sync.WaitGroup
	rechecked := make([]bool, 8)
	for i := range rechecked {
		wg.Go(func() {
			v, err := lockedDo(context.Background(), lock, 10*time.Second, recheck, act)
			if err != nil {
				t.Error(err)
			}
			rechecked[i] = v
		})
	}
	wg.Wait()
	if acts != 1 {
		t.Errorf("%d holders acted, want 1", acts)
	}
	n := 0
	for _, v := range rechecked {
		if v {
			n++
		}
	}
	if n != len(rechecked)-1 {
		t.Errorf("%d holders found the work done, want %d", n, len(rechecked)-1)
	}
}

// A lock held elsewhere for longer than the wait is an errNotLocked, and
// nothing acts.
func TestLockedDoBoundedWait(t *testing.T) {
	t.Parallel()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	lock := storeLock{storage: storage, name: "test/held", faults: newFaultLog(zap.NewNop())}
	if err := storage.Lock(context.Background(), lock.name); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = storage.Unlock(context.Background(), lock.name) }()
	acted := false
	_, err := lockedDo(context.Background(), lock, 100*time.Millisecond, nil, func() (struct{}, error) {
		acted = true
		return struct{}{}, nil
	})
	if !errors.Is(err, errNotLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want errNotLocked after the wait", err)
	}
	if acted {
		t.Error("acted without the lock")
	}
}

// unlockFails is a storage whose Unlock fails.
type unlockFails struct{ certmagic.Storage }

func (unlockFails) Unlock(context.Context, string) error { return errors.New("disk gone") }

// A failed unlock is logged, and act's result still returned.
func TestLockedDoLogsUnlock(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	lock := storeLock{storage: unlockFails{&certmagic.FileStorage{Path: t.TempDir()}}, name: "test/unlock", faults: newFaultLog(zap.New(core))}
	v, err := lockedDo(context.Background(), lock, time.Second, nil, func() (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Errorf("got %d, %v, want 7, nil", v, err)
	}
	if logs.FilterMessage("unlocking a storage lock").Len() != 1 {
		t.Errorf("want the failed unlock logged, got %v", logs.All())
	}
}
