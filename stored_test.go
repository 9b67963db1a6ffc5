package wxqrcode

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
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

// The ledger keeps at most max codes, removing the oldest, with work per
// code stored that does not grow with the codes stored: a few documents
// and the codes removed, never a listing.
func TestLedgerBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	storage := &countingStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	l := newLedger(storage, "wx1", apiUnlimited, newFaultLog(nil))
	const bound = 300
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = cacheKey(fmt.Sprint(i))
		before := storage.ops.Load()
		removed, err := l.add(ctx, keys[i], time.Time{}, bound)
		if err != nil {
			t.Fatal(err)
		}
		if ops := storage.ops.Load() - before; ops > 8 {
			t.Fatalf("code %d cost %d storage operations, want a few", i, ops)
		}
		if err := storage.FileStorage.Store(ctx, storageKey(keys[i]), []byte("code")); err != nil {
			t.Fatal(err)
		}
		if want := max(0, min(1, i+1-bound)); removed != want {
			t.Fatalf("code %d removed %d, want %d", i, removed, want)
		}
	}
	for i, k := range keys {
		_, err := storage.FileStorage.Load(ctx, storageKey(k))
		if kept := err == nil; kept != (i >= len(keys)-bound) {
			t.Errorf("code %d kept %v, want only the last %d", i, kept, bound)
		}
	}
	segs, err := storage.FileStorage.List(ctx, l.prefix+"seg", false)
	if err != nil || len(segs) > bound/ledgerSegment+2 {
		t.Errorf("%d segments (%v), want at most %d", len(segs), err, bound/ledgerSegment+2)
	}
}

// A lower bound removes the codes past it at the next store.
func TestLedgerBoundLowered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(&certmagic.FileStorage{Path: t.TempDir()}, "wx1", apiUnlimited, newFaultLog(nil))
	for i := range 10 {
		if _, err := l.add(ctx, cacheKey(fmt.Sprint(i)), time.Time{}, 10); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := l.add(ctx, cacheKey("new"), time.Time{}, 3)
	if err != nil || removed != 8 {
		t.Fatalf("removed %d (%v), want 8", removed, err)
	}
}

// Expired temporary codes at the head are removed by a store or a sweep.
func TestLedgerExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	l := newLedger(storage, "wx1", apiOATemporary, newFaultLog(nil))
	l.now = func() time.Time { return time.Unix(now.Load(), 0) }
	for i := range 5 {
		k := cacheKey(fmt.Sprint(i))
		if _, err := l.add(ctx, k, l.now().Add(time.Duration(60+i)*time.Second), 100); err != nil {
			t.Fatal(err)
		}
		if err := storage.Store(ctx, storageKey(k), []byte("code")); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.sweep(ctx); n != 0 || err != nil {
		t.Fatalf("swept %d (%v) before any expired", n, err)
	}
	now.Add(62)
	if n, err := l.sweep(ctx); n != 3 || err != nil {
		t.Fatalf("swept %d (%v), want the 3 expired", n, err)
	}
	now.Add(100)
	if n, err := l.add(ctx, cacheKey("new"), l.now().Add(time.Hour), 100); n != 2 || err != nil {
		t.Fatalf("a store removed %d (%v), want the 2 expired since", n, err)
	}
	for i := range 5 {
		if _, err := storage.Load(ctx, storageKey(cacheKey(fmt.Sprint(i)))); err == nil {
			t.Errorf("expired code %d still stored", i)
		}
	}
	if !strings.HasPrefix(l.prefix, "wxqrcode/stored/") {
		t.Errorf("ledger under %q", l.prefix)
	}
}
