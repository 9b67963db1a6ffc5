package caps

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// A cap counted in the storage would serialise every miss of a cluster
// behind the storage's lock on one document. Instead each instance leases
// a block of the count under the lock, spends it in memory, and leases the
// next block in the background before the last runs out. The document
// counts what was leased, so the instances together never exceed a cap; a
// crashed instance's unspent lease stays counted as spent.

// leasePool keeps leases across config reloads, one per document and cap,
// so sets with the same cap spend one lease.
var leasePool = caddy.NewUsagePool()

const (
	// maxBlock bounds the codes one lease takes: enough for seconds of
	// misses at a few hundred a second.
	maxBlock = 1024
	// recheckSpent is how long a spent total is answered from memory
	// before the document is read again: another instance may have given
	// back what it did not spend.
	recheckSpent = 30 * time.Second
)

// blockSize is the size of the next lease: an eighth of what is left, so
// leases shrink to 1 near the end and no instance holds much of it.
func blockSize(left int) int {
	return max(1, min(maxBlock, left/8))
}

// lease is this process's lease on one cap of one document.
type lease struct {
	book *book
	cap  Cap

	mu sync.Mutex
	// avail is what is leased and not spent; start is the window it
	// belongs to (window caps).
	avail int
	start time.Time
	// low is where the next lease is taken, in the background.
	low int
	// used says a code was taken since the book's last flush.
	used bool
	// spentAt is when the document had nothing left for a total cap.
	spentAt time.Time
	// fullUntil is the end of a window the document had nothing left in.
	fullUntil time.Time
	// refilling is closed when the lease being taken is in.
	refilling chan struct{}
	err       error // of the last lease taken
}

func newLease(b *book, c Cap) *lease {
	l := &lease{book: b, cap: c}
	b.mu.Lock()
	b.leases[l] = true
	b.mu.Unlock()
	return l
}

// Destruct gives back what is unspent, once the last set using the lease
// is gone. A lease that never took a block writes nothing: loading a
// config (caddy validate, a reload) must leave the storage as it was.
func (l *lease) Destruct() error {
	b := l.book
	b.mu.Lock()
	delete(b.leases, l)
	b.mu.Unlock()
	l.mu.Lock()
	refilling := l.refilling
	l.mu.Unlock()
	if refilling != nil {
		<-refilling // a block being taken is given back with the rest
	}
	l.mu.Lock()
	unspent := l.avail > 0
	l.mu.Unlock()
	if !unspent {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), docWait)
	defer cancel()
	if err := b.update(ctx, func(doc *Doc) { l.giveBack(doc, false) }); err != nil {
		b.faults.Error("giving back unspent codes; they stay counted as spent", zap.String("app", b.appID), zap.Error(err))
	}
	return nil
}

// permit is one code taken from a lease.
type permit struct {
	lease *lease
	start time.Time
}

// take spends one code of the lease, taking a new lease if none is left.
// A cap known to be spent or full is answered from memory, without a lock.
func (l *lease) take(ctx context.Context) (permit, error) {
	per := time.Duration(l.cap.Per)
	l.mu.Lock()
	for {
		now := l.book.now()
		if per != 0 && l.avail > 0 && !now.Before(l.start.Add(per)) {
			l.avail = 0 // the window is over
		}
		if l.avail > 0 {
			l.avail--
			l.used = true
			if l.avail <= l.low {
				l.startRefill()
			}
			p := permit{l, l.start}
			l.mu.Unlock()
			return p, nil
		}
		if per == 0 && !l.spentAt.IsZero() {
			if now.Sub(l.spentAt) >= recheckSpent {
				l.startRefill()
			}
			l.mu.Unlock()
			return permit{}, &SpentError{Cap: l.cap}
		}
		if per != 0 && now.Before(l.fullUntil) {
			l.mu.Unlock()
			return permit{}, &FullError{Cap: l.cap, RetryAfter: l.fullUntil.Sub(now)}
		}
		ch := l.startRefill()
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return permit{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
		l.mu.Lock()
		if l.avail == 0 && l.err != nil {
			l.mu.Unlock()
			return permit{}, ErrUnavailable
		}
	}
}

// put gives back a code whose call WeChat refused, unless its window is
// over.
func (l *lease) put(p permit) {
	l.mu.Lock()
	if l.cap.Per == 0 || p.start.Equal(l.start) {
		l.avail++
	}
	l.mu.Unlock()
}

// startRefill takes the next lease in the background, unless one is being
// taken, and returns what closes when it is in. l.mu is held.
func (l *lease) startRefill() chan struct{} {
	if l.refilling == nil {
		l.refilling = make(chan struct{})
		go l.refill()
	}
	return l.refilling
}

func (l *lease) refill() {
	ctx, cancel := context.WithTimeout(context.Background(), docWait)
	defer cancel()
	per := time.Duration(l.cap.Per)
	var n int
	var now, start, fullUntil time.Time
	spent := false
	err := l.book.update(ctx, func(doc *Doc) {
		now = l.book.now()
		if per == 0 {
			t := doc.total()
			left := l.cap.Codes - t.Leased
			if spent = left <= 0; !spent {
				n = blockSize(left)
				t.Leased += n
			}
			return
		}
		w := doc.window(l.cap, now)
		start = w.Start
		if left := l.cap.Codes - w.Count; left > 0 {
			n = blockSize(left)
			w.Count += n
		} else {
			fullUntil = w.Start.Add(per)
		}
	})
	if err != nil {
		l.book.faults.Error("leasing codes of a cap", zap.String("app", l.book.appID), zap.Error(err))
		n = 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	defer close(l.refilling)
	l.refilling = nil
	l.err = err
	if err != nil {
		return
	}
	if per == 0 {
		l.spentAt = time.Time{}
		if spent {
			l.spentAt = now
		}
	} else {
		if !start.Equal(l.start) {
			l.avail = 0 // those of an older window lapse with it
			l.start = start
		}
		l.fullUntil = fullUntil
	}
	l.avail += n
	l.low = n / 2
	l.used = true
}

// idle reports whether the lease holds codes it did not spend since the
// last call, and starts a new period.
func (l *lease) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	idle := !l.used && l.avail > 0 && l.refilling == nil
	l.used = false
	return idle
}

// giveBack returns the unspent codes to the document; with onlyIdle, only
// if none was spent since idle said so.
func (l *lease) giveBack(doc *Doc, onlyIdle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.avail == 0 || (onlyIdle && l.used) {
		return
	}
	if l.cap.Per == 0 {
		t := doc.total()
		t.Leased = max(0, t.Leased-l.avail)
	} else if w := doc.Windows[windowName(l.cap)]; w != nil && w.Start.Equal(l.start) {
		w.Count = max(0, w.Count-l.avail)
	}
	l.avail = 0
}
