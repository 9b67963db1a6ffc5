package caps

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// Two instances lease from one document: together they spend exactly the
// cap, and what one gives back on Cleanup the other can spend.
func TestLeasesExactAcrossInstances(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := Cap{Codes: 500}
	a, b := testLease(t, testBook(t, dir, time.Now), c), testLease(t, testBook(t, dir, time.Now), c)
	var wg sync.WaitGroup
	var mu sync.Mutex
	spent := map[*lease]int{}
	for i := range 16 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			n, err := takeAll(t, l)
			if spent := new(SpentError); !errors.As(err, &spent) {
				t.Errorf("refused with %v, want the budget spent", err)
			}
			mu.Lock()
			spent[l] += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if spent[a]+spent[b] != 500 || spent[a] == 0 || spent[b] == 0 {
		t.Fatalf("spent %d and %d, want 500 between them, some each", spent[a], spent[b])
	}

	// a gives back 3 codes WeChat refused, then goes away with them.
	for range 3 {
		a.put(permit{lease: a})
	}
	if err := a.Destruct(); err != nil {
		t.Fatal(err)
	}
	if doc := a.book.doc(t); doc.Total.Leased != 497 {
		t.Fatalf("leased %d after the give-back, want 497", doc.Total.Leased)
	}
	// b answers from memory until it looks again.
	if _, err := b.take(context.Background()); err == nil {
		t.Fatal("a spent total was taken before the recheck")
	}
	b.mu.Lock()
	b.spentAt = b.spentAt.Add(-recheckSpent)
	b.mu.Unlock()
	_, _ = b.take(context.Background()) // starts the recheck
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for n < 3 && time.Now().Before(deadline) {
		if _, err := b.take(context.Background()); err == nil {
			n++
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n != 3 {
		t.Errorf("took %d of the 3 given back", n)
	}
}

// A total cap counts the codes of a document written before leases.
func TestLeaseCountsOldDocument(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bk := testBook(t, dir, time.Now)
	if err := bk.update(context.Background(), func(d *Doc) { d.Generated = 7 }); err != nil {
		t.Fatal(err)
	}
	if n, _ := takeAll(t, testLease(t, bk, Cap{Codes: 10})); n != 3 {
		t.Errorf("took %d, want 3 of 10 after 7 generated", n)
	}
}

// A spent cap answers at once while the document is locked elsewhere.
func TestSpentCapAnswersWithoutLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 1, 1, 10, 30, 0, 0, time.UTC)}
	bk := testBook(t, dir, clk.now)
	total, window := testLease(t, bk, Cap{Codes: 2}), testLease(t, bk, Cap{Codes: 2, Per: caddyHour})
	takeAll(t, total)
	takeAll(t, window)
	ctx := context.Background()
	other := &certmagic.FileStorage{Path: dir}
	if err := other.Lock(ctx, bk.key()); err != nil {
		t.Fatal(err)
	}
	defer other.Unlock(ctx, bk.key())
	for _, l := range []*lease{total, window} {
		done := make(chan error, 1)
		go func() {
			_, err := l.take(ctx)
			done <- err
		}()
		select {
		case err := <-done:
			var spent *SpentError
			var full *FullError
			if !errors.As(err, &spent) && !errors.As(err, &full) {
				t.Errorf("%v, want the cap's refusal", err)
			}
			if full != nil && full.RetryAfter != 30*time.Minute {
				t.Errorf("Retry-After %v, want the 30m left in the window", full.RetryAfter)
			}
		case <-time.After(time.Minute):
			t.Fatal("a spent cap waited for the lock")
		}
	}
}

const caddyHour = 3600 * 1e9

// Windows roll over by the clock; codes given back return to their
// window only; a lagging clock does not turn the document's window back.
func TestWindowRolloverReleaseSkew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := Cap{Codes: 3, Per: caddyHour}
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	clkA, clkB := &clock{t: t0.Add(50 * time.Minute)}, &clock{t: t0.Add(50 * time.Minute)}
	a := testLease(t, testBook(t, dir, clkA.now), c)
	p, err := a.take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := takeAll(t, a); n != 2 {
		t.Fatalf("took %d more, want 2", n)
	}
	// Given back in its window: spendable again.
	a.put(p)
	if _, err := a.take(context.Background()); err != nil {
		t.Fatalf("a code given back in its window: %v", err)
	}
	// The next window: a fresh count; an old permit given back is dropped.
	clkA.set(t0.Add(70 * time.Minute))
	if n, _ := takeAll(t, a); n != 3 {
		t.Fatalf("took %d in the new window, want 3", n)
	}
	a.put(p)
	if _, err := a.take(context.Background()); err == nil {
		t.Fatal("a code of the last window was given back into this one")
	}
	if doc := a.book.doc(t); !doc.Windows["1h0m0s"].Start.Equal(t0.Add(time.Hour)) || doc.Windows["1h0m0s"].Count != 3 {
		t.Fatalf("window %+v", doc.Windows["1h0m0s"])
	}
	// b's clock lags into the last window: it spends in the document's
	// window, now full, and leaves it as it was.
	b := testLease(t, testBook(t, dir, clkB.now), c)
	_, err = b.take(context.Background())
	if full := new(FullError); !errors.As(err, &full) {
		t.Fatalf("lagging instance: %v, want the window full", err)
	}
	if doc := a.book.doc(t); !doc.Windows["1h0m0s"].Start.Equal(t0.Add(time.Hour)) || doc.Windows["1h0m0s"].Count != 3 {
		t.Errorf("a lagging clock moved the window to %+v", doc.Windows["1h0m0s"])
	}
}

// Handlers with different limits on one window share its count, each
// checking its own limit.
func TestWindowLimitsShareCount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}
	bk := testBook(t, dir, clk.now)
	small, large := testLease(t, bk, Cap{Codes: 4, Per: caddyHour}), testLease(t, bk, Cap{Codes: 10, Per: caddyHour})
	if n, _ := takeAll(t, small); n != 4 {
		t.Fatalf("small took %d, want 4", n)
	}
	if n, _ := takeAll(t, large); n != 6 {
		t.Errorf("large took %d, want the 6 the small one left", n)
	}
}

// An idle lease gives back its codes at the next flush.
func TestIdleLeaseGivesBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bk := testBook(t, dir, time.Now)
	l := testLease(t, bk, Cap{Codes: 1000})
	if _, err := l.take(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitRefilled(l)
	bk.flush(true) // spent since the last flush: kept
	if doc := bk.doc(t); doc.Total.Leased < 2 {
		t.Fatalf("leased %d, want the lease kept", doc.Total.Leased)
	}
	bk.flush(true) // idle since: given back
	if doc := bk.doc(t); doc.Total.Leased != 1 {
		t.Errorf("leased %d after an idle period, want 1 (the code spent)", doc.Total.Leased)
	}
}

func waitRefilled(l *lease) {
	for {
		l.mu.Lock()
		ch := l.refilling
		l.mu.Unlock()
		if ch == nil {
			return
		}
		<-ch
	}
}
