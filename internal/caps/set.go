package caps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Faults logs the storage's faults. *zap.Logger is one; a handler passes
// one that holds back repeats, as a broken storage meets every request.
type Faults interface {
	Warn(msg string, fields ...zap.Field)
	Error(msg string, fields ...zap.Field)
}

// Options are what Open takes besides the caps.
type Options struct {
	// DocKey and DocLock name the app's document of counts in the storage
	// and the lock it is written under; both are required.
	DocKey, DocLock string
	// Now is the clock of windows and counts; nil means time.Now.
	Now func() time.Time
	// Logger gets the warnings about the lifetime budget; nil means none.
	Logger *zap.Logger
	// Faults logs the storage's faults; nil means Logger.
	Faults Faults
}

// Set is a handler's share of the counts: the leases of its caps on its
// app's document, and its per-visitor caps. Sets of one storage, app and
// group share the document's book, and sets with the same cap its lease,
// across config reloads too.
type Set struct {
	book     *book
	leases   []*lease
	visitors []*visitorCap
	now      func() time.Time
	// keys are what the set holds in the pools.
	bookKey     string
	leaseKeys   []string
	visitorKeys []string
}

// Open takes the counts of caps from the pools: the book of the document
// of appID and group in storage, which storeID names, and a lease or a
// per-visitor count for each cap. Close lets go of them.
func Open(storage certmagic.Storage, storeID, appID, group string, caps []Cap, opts Options) (*Set, error) {
	if opts.DocKey == "" || opts.DocLock == "" {
		return nil, errors.New("caps: Options.DocKey and DocLock must name the document of counts and its lock")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Faults == nil {
		opts.Faults = opts.Logger
	}
	bookKey := storeID + "|" + appID + "|" + group
	pooled, _, err := bookPool.LoadOrNew(bookKey, func() (caddy.Destructor, error) {
		b := newBook(storage, appID, group, opts)
		b.start()
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	s := &Set{book: pooled.(*book), now: opts.Now, bookKey: bookKey}
	for _, c := range caps {
		if err := s.add(c); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// add takes the lease or the per-visitor count of c.
func (s *Set) add(c Cap) error {
	if c.By != "" {
		key := fmt.Sprintf("%s|%d|%s|%s", s.bookKey, c.Codes, time.Duration(c.Per), c.By)
		v, _, err := visitorPool.LoadOrNew(key, func() (caddy.Destructor, error) { return newVisitorCap(c, s.now) })
		if err != nil {
			return err
		}
		s.visitorKeys = append(s.visitorKeys, key)
		s.visitors = append(s.visitors, v.(*visitorCap))
		return nil
	}
	key := s.bookKey + "|" + time.Duration(c.Per).String() + "|" + strconv.Itoa(c.Codes)
	l, _, err := leasePool.LoadOrNew(key, func() (caddy.Destructor, error) { return newLease(s.book, c), nil })
	if err != nil {
		return err
	}
	s.leaseKeys = append(s.leaseKeys, key)
	s.leases = append(s.leases, l.(*lease))
	return nil
}

// Close lets go of the leases, the per-visitor counts and the book: the
// last set using a lease gives back what it did not spend, and the last
// using the book writes what is left.
func (s *Set) Close() {
	for _, k := range s.leaseKeys {
		_, _ = leasePool.Delete(k)
	}
	for _, k := range s.visitorKeys {
		_, _ = visitorPool.Delete(k)
	}
	_, _ = bookPool.Delete(s.bookKey)
}

// Reservation is one code taken from each of a set's caps counted in the
// storage; empty when the set has none.
type Reservation []permit

// Reserve takes a code from every cap counted in the storage, or refuses
// with the error of the first cap that has none, giving back what it
// took. It is done before the call, so concurrent misses cannot
// overspend.
func (s *Set) Reserve(ctx context.Context) (Reservation, error) {
	var r Reservation
	for _, l := range s.leases {
		p, err := l.take(ctx)
		if err != nil {
			s.Release(r)
			return nil, err
		}
		r = append(r, p)
	}
	return r, nil
}

// Release gives back a reservation whose call WeChat refused.
func (s *Set) Release(r Reservation) {
	for _, p := range r {
		p.lease.put(p)
	}
}

// Settle counts the code of r that WeChat generated, or whose call's
// outcome is unknown, with WeChat's Num-Used if it sent one (numUsed >=
// 0, else -1). It is written with the book's next flush.
func (s *Set) Settle(r Reservation, numUsed int) {
	leased := false
	for _, p := range r {
		leased = leased || p.lease.cap.Per == 0
	}
	s.book.counted(leased)
	if numUsed >= 0 {
		s.book.sawNumUsed(numUsed)
	}
}

// TakeVisitor counts a request that goes on to fetch a new code against
// the set's per-visitor caps, or refuses it with a FullError. values[i]
// is the value of the template of the i-th cap with By, in the order
// given to Open. It returns what gives the codes back.
func (s *Set) TakeVisitor(values []string) (giveBack func(), err error) {
	now := s.now()
	var undo []func()
	giveBack = func() {
		for _, u := range undo {
			u()
		}
	}
	for i, v := range s.visitors {
		var value string
		if i < len(values) {
			value = values[i]
		}
		visitor := visitorKey(value)
		start, err := v.take(visitor, now)
		if err != nil {
			giveBack()
			return nil, err
		}
		undo = append(undo, func() { v.put(visitor, start) })
	}
	return giveBack, nil
}
