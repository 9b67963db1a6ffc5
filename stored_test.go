package wxqrcode

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// countingStorage counts the operations on a storage.
type countingStorage struct {
	*certmagic.FileStorage
	ops atomic.Int64
}

func (s *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.ops.Add(1)
	return s.FileStorage.Load(ctx, key)
}

func (s *countingStorage) Store(ctx context.Context, key string, value []byte) error {
	s.ops.Add(1)
	return s.FileStorage.Store(ctx, key, value)
}

func (s *countingStorage) Delete(ctx context.Context, key string) error {
	s.ops.Add(1)
	return s.FileStorage.Delete(ctx, key)
}

func (s *countingStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	panic("the ledger lists nothing")
}

// addOne adds one code, stored at now, as a batch of its own, and returns
// how many codes it removed.
func addOne(l *ledger, key string, expires time.Time, max int, now time.Time) (int, error) {
	a := &ledgerAdd{entry: ledgerEntry{Key: key}, value: []byte("code"), max: max, at: now}
	if !expires.IsZero() {
		a.entry.Expires = expires.Unix()
	}
	return l.addBatch(context.Background(), []*ledgerAdd{a})
}

// Codes added at once go in together, under one storage lock: 64
// concurrent stores take far fewer locks than codes, and the bound holds.
func TestLedgerBatches(t *testing.T) {
	t.Parallel()
	storage := &lockCounting{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	l := newLedger(storage, "wx1", apiUnlimited, newFaultLog(zap.NewNop()), zap.NewNop())
	var wg sync.WaitGroup
	var dropped atomic.Int64
	for i := range 64 {
		wg.Go(func() {
			err := l.add(context.Background(), cacheKey(fmt.Sprint(i)), []byte("code"), time.Time{}, 50, time.Now())
			if errors.Is(err, errDropped) {
				dropped.Add(1)
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// A batch larger than the bound drops its first codes, unwritten.
	stored := 0
	for i := range 64 {
		if _, err := storage.FileStorage.Load(context.Background(), layout.code(cacheKey(fmt.Sprint(i)))); err == nil {
			stored++
		}
	}
	if stored != 50 || dropped.Load() > 14 {
		t.Errorf("%d codes stored and %d dropped, want 50 stored and no more than 14 dropped", stored, dropped.Load())
	}
	t.Logf("64 codes added under %d locks", storage.locks.Load())
	if n := storage.locks.Load(); n >= 32 {
		t.Errorf("64 codes added under %d locks, want them batched", n)
	}
	tx, err := l.open(context.Background())
	if err != nil || tx.head.Count != 50 {
		t.Errorf("the ledger counts %d (%v), want the bound, 50", tx.head.Count, err)
	}
}

// lockCounting counts the locks taken on a storage.
type lockCounting struct {
	*certmagic.FileStorage
	locks atomic.Int64
}

func (s *lockCounting) Lock(ctx context.Context, name string) error {
	s.locks.Add(1)
	return s.FileStorage.Lock(ctx, name)
}

// The ledger keeps at most max codes, removing the oldest, with work per
// code stored that does not grow with the codes stored: a few documents
// and the codes removed, never a listing.
func TestLedgerBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	storage := &countingStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	l := newLedger(storage, "wx1", apiUnlimited, newFaultLog(zap.NewNop()), zap.NewNop())
	const bound = 300
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = cacheKey(fmt.Sprint(i))
		before := storage.ops.Load()
		removed, err := addOne(l, keys[i], time.Time{}, bound, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if ops := storage.ops.Load() - before; ops > 9 {
			t.Fatalf("code %d cost %d storage operations, want a few", i, ops)
		}
		if want := max(0, min(1, i+1-bound)); removed != want {
			t.Fatalf("code %d removed %d, want %d", i, removed, want)
		}
	}
	for i, k := range keys {
		_, err := storage.FileStorage.Load(ctx, layout.code(k))
		if kept := err == nil; kept != (i >= len(keys)-bound) {
			t.Errorf("code %d kept %v, want only the last %d", i, kept, bound)
		}
	}
	segs, err := storage.FileStorage.List(ctx, l.name+"/seg", false)
	if err != nil || len(segs) > bound/ledgerSegment+2 {
		t.Errorf("%d segments (%v), want at most %d", len(segs), err, bound/ledgerSegment+2)
	}
}

// A lower bound removes the codes past it at the next store.
func TestLedgerBoundLowered(t *testing.T) {
	t.Parallel()
	l := newLedger(&certmagic.FileStorage{Path: t.TempDir()}, "wx1", apiUnlimited, newFaultLog(zap.NewNop()), zap.NewNop())
	for i := range 10 {
		if _, err := addOne(l, cacheKey(fmt.Sprint(i)), time.Time{}, 10, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := addOne(l, cacheKey("new"), time.Time{}, 3, time.Now())
	if err != nil || removed != 8 {
		t.Fatalf("removed %d (%v), want 8", removed, err)
	}
}

// Expired temporary codes at the head are removed by a store or a sweep.
func TestLedgerExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	l := newLedger(storage, "wx1", apiOATemporary, newFaultLog(zap.NewNop()), zap.NewNop())
	for i := range 5 {
		k := cacheKey(fmt.Sprint(i))
		if _, err := addOne(l, k, now.Add(time.Duration(60+i)*time.Second), 100, now); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.sweep(ctx, now); n != 0 || err != nil {
		t.Fatalf("swept %d (%v) before any expired", n, err)
	}
	now = now.Add(62 * time.Second)
	if n, err := l.sweep(ctx, now); n != 3 || err != nil {
		t.Fatalf("swept %d (%v), want the 3 expired", n, err)
	}
	now = now.Add(100 * time.Second)
	if n, err := addOne(l, cacheKey("new"), now.Add(time.Hour), 100, now); n != 2 || err != nil {
		t.Fatalf("a store removed %d (%v), want the 2 expired since", n, err)
	}
	for i := range 5 {
		if _, err := storage.Load(ctx, layout.code(cacheKey(fmt.Sprint(i)))); err == nil {
			t.Errorf("expired code %d still stored", i)
		}
	}
	if !strings.HasPrefix(l.name, "wxqrcode/stored/") {
		t.Errorf("ledger under %q", l.name)
	}
}
