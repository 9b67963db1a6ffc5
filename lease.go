package wxqrcode

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
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
// so handlers with the same cap spend one lease.
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

// capLease is this process's lease on one cap of one document.
type capLease struct {
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

func newLease(b *book, c Cap) *capLease {
	l := &capLease{book: b, cap: c}
	b.mu.Lock()
	b.leases[l] = true
	b.mu.Unlock()
	return l
}

// Destruct gives back what is unspent, once the last handler using the
// lease is gone. A lease that never took a block writes nothing: loading
// a config (caddy validate, a reload) must leave the storage as it was.
func (l *capLease) Destruct() error {
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
	if err := b.update(ctx, func(doc *quotaDoc) { l.giveBack(doc, false) }); err != nil {
		b.faults.error("giving back unspent codes; they stay counted as spent", zap.String("app", b.appID), zap.Error(err))
	}
	return nil
}

// permit is one code taken from a lease.
type permit struct {
	lease *capLease
	start time.Time
}

// take spends one code of the lease, taking a new lease if none is left.
// A cap known to be spent or full is answered from memory, without a lock.
func (l *capLease) take(ctx context.Context) (permit, error) {
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
			return permit{}, spentProblem(l.cap)
		}
		if per != 0 && now.Before(l.fullUntil) {
			l.mu.Unlock()
			return permit{}, fullProblem(l.cap, l.fullUntil.Sub(now))
		}
		ch := l.startRefill()
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return permit{}, fmt.Errorf("%w: %w", errCapsUnavailable, ctx.Err())
		}
		l.mu.Lock()
		if l.avail == 0 && l.err != nil {
			l.mu.Unlock()
			return permit{}, errCapsUnavailable
		}
	}
}

// put gives back a code whose call WeChat refused, unless its window is
// over.
func (l *capLease) put(p permit) {
	l.mu.Lock()
	if l.cap.Per == 0 || p.start.Equal(l.start) {
		l.avail++
	}
	l.mu.Unlock()
}

// startRefill takes the next lease in the background, unless one is being
// taken, and returns what closes when it is in. l.mu is held.
func (l *capLease) startRefill() chan struct{} {
	if l.refilling == nil {
		l.refilling = make(chan struct{})
		go l.refill()
	}
	return l.refilling
}

func (l *capLease) refill() {
	ctx, cancel := context.WithTimeout(context.Background(), docWait)
	defer cancel()
	per := time.Duration(l.cap.Per)
	var n int
	var now, start, fullUntil time.Time
	spent := false
	err := l.book.update(ctx, func(doc *quotaDoc) {
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
		l.book.faults.error("leasing codes of a cap", zap.String("app", l.book.appID), zap.Error(err))
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
func (l *capLease) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	idle := !l.used && l.avail > 0 && l.refilling == nil
	l.used = false
	return idle
}

// giveBack returns the unspent codes to the document; with onlyIdle, only
// if none was spent since idle said so.
func (l *capLease) giveBack(doc *quotaDoc, onlyIdle bool) {
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

func spentProblem(c Cap) *problem {
	return localProblem(http.StatusForbidden, codeBudgetSpent,
		fmt.Sprintf("wxqrcode: the budget of %d new codes is spent", c.Codes))
}

func fullProblem(c Cap, retryAfter time.Duration) *problem {
	p := localProblem(http.StatusTooManyRequests, codeRateCapped,
		fmt.Sprintf("wxqrcode: %d new codes per %s reached", c.Codes, time.Duration(c.Per)))
	p.retryAfter = retryAfter
	return p
}

// quota is a handler's share of its document: the leases of its caps.
type quota struct {
	book   *book
	leases []*capLease
	// budget says a total lease counts the handler's codes.
	budget bool
	// keys are what the handler holds in the pools.
	bookKey   string
	leaseKeys []string
}

// openQuota takes the book and leases of a handler from the pools.
func openQuota(b func() *book, bookKey string, caps []Cap) (*quota, error) {
	pooled, _, err := bookPool.LoadOrNew(bookKey, func() (caddy.Destructor, error) {
		bk := b()
		bk.start()
		return bk, nil
	})
	if err != nil {
		return nil, err
	}
	q := &quota{book: pooled.(*book), bookKey: bookKey}
	for _, c := range caps {
		if c.By != "" {
			continue
		}
		key := bookKey + "|" + time.Duration(c.Per).String() + "|" + strconv.Itoa(c.Codes)
		l, _, err := leasePool.LoadOrNew(key, func() (caddy.Destructor, error) { return newLease(q.book, c), nil })
		if err != nil {
			q.close()
			return nil, err
		}
		q.leaseKeys = append(q.leaseKeys, key)
		q.leases = append(q.leases, l.(*capLease))
		q.budget = q.budget || c.Per == 0
	}
	return q, nil
}

// close lets go of the leases, then of the book.
func (q *quota) close() {
	for _, k := range q.leaseKeys {
		_, _ = leasePool.Delete(k)
	}
	_, _ = bookPool.Delete(q.bookKey)
}

// reservation is one code taken from each cap.
type reservation []permit

// reserve takes a code from every cap, or returns the problem of the
// first cap that has none, giving back what it took. It is done before
// the call, so concurrent misses cannot overspend.
func (q *quota) reserve(ctx context.Context) (reservation, error) {
	var r reservation
	for _, l := range q.leases {
		p, err := l.take(ctx)
		if err != nil {
			q.release(r)
			return nil, err
		}
		r = append(r, p)
	}
	return r, nil
}

// release gives back a reservation whose call WeChat refused.
func (q *quota) release(r reservation) {
	for _, p := range r {
		p.lease.put(p)
	}
}

// spent counts a code WeChat generated, or a call whose outcome is unknown,
// with WeChat's Num-Used if it sent one (numUsed >= 0). It is written with
// the book's next flush.
func (q *quota) spent(numUsed int) {
	q.book.counted(q.budget)
	if numUsed >= 0 {
		q.book.sawNumUsed(numUsed)
	}
}
