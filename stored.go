package wxqrcode

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// DefaultMaxStored is how many codes a route keeps in its storage when
// max_stored is not set: at a master's tens of kilobytes, about half a
// gigabyte at most.
const DefaultMaxStored = 10000

// ledgerSegment is how many codes one document of a ledger lists: a
// store reads and writes a document or two of this size, whatever the
// number of codes.
const ledgerSegment = 256

// ledger lists the codes stored for an app and api, oldest first, in the
// storage, so that every instance sharing it and every restart keeps one
// count: a head document (the first and last segment, the count) and
// segments of up to ledgerSegment codes. Adding codes removes the oldest
// past the bound and the expired temporary codes at the head: the work is
// the codes removed, never a listing of the storage. It is updated under
// the storage's lock, before the codes are written, so the codes in the
// storage never outnumber the bound. In a process, the codes waiting to
// be added go in together, one lock for all: a storage lock is slow to
// take when others wait for it (file_system polls every second).
type ledger struct {
	storage    certmagic.Storage
	appID, api string
	// name is the ledger's in logs.
	name   string
	lock   storeLock
	logger *zap.Logger

	mu      sync.Mutex
	waiting []*ledgerAdd
	// committing says a goroutine is adding what waits.
	committing bool
}

// ledgerAdd is a code waiting to be added and stored, with its route's
// bound, and where the outcome goes.
type ledgerAdd struct {
	entry ledgerEntry
	value []byte
	max   int
	// at is when the code is stored, by its handler's clock: what the
	// expired codes are removed against.
	at   time.Time
	done chan error
	// dropped says the bound removed the code as soon as it was listed.
	dropped bool
	// err is the code's own store's.
	err error
}

// Destruct lets a ledger live in a caddy.UsagePool.
func (*ledger) Destruct() error { return nil }

// ledgerPool shares a ledger between the handlers of one storage, app and
// api, across config reloads too.
var ledgerPool = caddy.NewUsagePool()

type ledgerHead struct {
	First int `json:"first"`
	Last  int `json:"last"`
	Count int `json:"count"`
}

type ledgerDoc struct {
	// Off is the first code of Keys still stored.
	Off  int           `json:"off"`
	Keys []ledgerEntry `json:"keys"`
}

type ledgerEntry struct {
	Key string `json:"k"`
	// Expires is a temporary code's end, in Unix seconds; 0 for a code
	// that never expires.
	Expires int64 `json:"e,omitempty"`
}

func newLedger(storage certmagic.Storage, appID, api string, faults *faultLog, logger *zap.Logger) *ledger {
	return &ledger{
		storage: storage,
		appID:   appID,
		api:     api,
		name:    layout.ledger(appID, api),
		lock:    storeLock{storage: storage, name: layout.ledgerLock(appID, api), faults: faults},
		logger:  logger,
	}
}

// ledgerWait bounds the wait for a ledger's lock.
const ledgerWait = 30 * time.Second

// add lists key as stored at now, with the codes waiting beside it,
// removes the oldest past the smallest of their bounds and the expired
// ones at the head, and stores value under key: all under the storage's
// lock, so that no instance removes a code between its listing and its
// write.
func (l *ledger) add(ctx context.Context, key string, value []byte, expires time.Time, max int, now time.Time) error {
	a := &ledgerAdd{entry: ledgerEntry{Key: key}, value: value, max: max, at: now, done: make(chan error, 1)}
	if !expires.IsZero() {
		a.entry.Expires = expires.Unix()
	}
	l.mu.Lock()
	l.waiting = append(l.waiting, a)
	if !l.committing {
		l.committing = true
		go l.commit()
	}
	l.mu.Unlock()
	select {
	case err := <-a.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commit adds what waits, batch after batch, until nothing does.
func (l *ledger) commit() {
	for {
		l.mu.Lock()
		batch := l.waiting
		l.waiting = nil
		if len(batch) == 0 {
			l.committing = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		_, err := protect(l.logger, l.name, func() (int, error) { return l.addBatch(context.Background(), batch) })
		for _, a := range batch {
			switch {
			case err != nil:
				a.done <- err
			case a.dropped:
				a.done <- errDropped
			default:
				a.done <- a.err
			}
		}
	}
}

// errDropped says a code of a batch was past the bound as soon as it was
// listed (a batch larger than the bound): it is not to be stored.
var errDropped = errors.New("dropped: past max_stored within its batch")

// addBatch adds a batch under the storage's lock, and marks the codes of
// the batch that the bound removed at once.
func (l *ledger) addBatch(ctx context.Context, batch []*ledgerAdd) (int, error) {
	return lockedDo(ctx, l.lock, ledgerWait, nil, func() (int, error) {
		t, err := l.open(ctx)
		if err != nil {
			return 0, err
		}
		last, err := t.doc(t.head.Last)
		if err != nil {
			return 0, err
		}
		t.batch, t.batchFrom = batch, position(t.head.Last, len(last.Keys))
		bound := batch[0].max
		for _, a := range batch {
			if err := t.append(a.entry); err != nil {
				return 0, err
			}
			bound = min(bound, a.max)
		}
		// The codes expired by the time the last of the batch is stored.
		removed, err := t.trim(bound, batch[len(batch)-1].at)
		if err != nil {
			return removed, err
		}
		if removed > 0 {
			l.logger.Debug("removed stored codes past max_stored or expired",
				zap.String("ledger", l.name), zap.Int("removed", removed), zap.Int("max_stored", bound))
		}
		// The ledger first: a crash between the two leaves listed codes
		// that are not stored, which the bound counts, never stored codes
		// it does not.
		if err := t.write(); err != nil {
			return removed, err
		}
		for _, a := range batch {
			if !a.dropped && a.value != nil {
				_, a.err = protect(l.logger, a.entry.Key, func() (struct{}, error) {
					return struct{}{}, l.storage.Store(ctx, layout.code(a.entry.Key), a.value)
				})
			}
		}
		return removed, nil
	})
}

// sweep removes the codes at the head expired at now.
func (l *ledger) sweep(ctx context.Context, now time.Time) (int, error) {
	return lockedDo(ctx, l.lock, ledgerWait, nil, func() (int, error) {
		t, err := l.open(ctx)
		if err != nil {
			return 0, err
		}
		removed, err := t.trim(int(^uint(0)>>1), now)
		if err != nil {
			return removed, err
		}
		return removed, t.write()
	})
}

// ledgerTx is a ledger's documents read under its lock.
type ledgerTx struct {
	ctx   context.Context
	l     *ledger
	head  ledgerHead
	docs  map[int]*ledgerDoc
	dirty map[int]bool
	gone  []int
	// batch is what this transaction lists, from position batchFrom on.
	batch     []*ledgerAdd
	batchFrom int
}

// position numbers the codes of a ledger in order: every segment but the
// last is full.
func position(segment, index int) int { return segment*ledgerSegment + index }

func (l *ledger) open(ctx context.Context) (*ledgerTx, error) {
	t := &ledgerTx{ctx: ctx, l: l, docs: map[int]*ledgerDoc{}, dirty: map[int]bool{}}
	raw, err := l.storage.Load(ctx, layout.ledgerHead(l.appID, l.api))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, &t.head); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *ledgerTx) docKey(n int) string { return layout.ledgerSegment(t.l.appID, t.l.api, n) }

// doc returns segment n, empty if it was never written.
func (t *ledgerTx) doc(n int) (*ledgerDoc, error) {
	if d := t.docs[n]; d != nil {
		return d, nil
	}
	d := &ledgerDoc{}
	raw, err := t.l.storage.Load(t.ctx, t.docKey(n))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, d); err != nil {
			return nil, err
		}
	}
	t.docs[n] = d
	return d, nil
}

// append lists e as the newest code.
func (t *ledgerTx) append(e ledgerEntry) error {
	last, err := t.doc(t.head.Last)
	if err != nil {
		return err
	}
	if len(last.Keys) >= ledgerSegment {
		t.head.Last++
		last = &ledgerDoc{}
		t.docs[t.head.Last] = last
	}
	last.Keys = append(last.Keys, e)
	t.dirty[t.head.Last] = true
	t.head.Count++
	return nil
}

// trim removes codes from the head while there are more than max, or the
// head's has expired at now.
func (t *ledgerTx) trim(max int, now time.Time) (int, error) {
	removed := 0
	for t.head.Count > 0 {
		d, err := t.doc(t.head.First)
		if err != nil {
			return removed, err
		}
		if d.Off >= len(d.Keys) {
			if t.head.First >= t.head.Last {
				// The count says more than the ledger lists: trust the list.
				t.head.Count = 0
				break
			}
			t.gone = append(t.gone, t.head.First)
			t.head.First++
			continue
		}
		e := d.Keys[d.Off]
		if t.head.Count <= max && (e.Expires == 0 || e.Expires > now.Unix()) {
			break
		}
		if p := position(t.head.First, d.Off) - t.batchFrom; t.batch != nil && p >= 0 {
			// Listed by this batch and not written yet: it never will be.
			t.batch[p].dropped = true
		} else if err := t.l.storage.Delete(t.ctx, layout.code(e.Key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		d.Off++
		t.dirty[t.head.First] = true
		t.head.Count--
		removed++
	}
	return removed, nil
}

// write stores the segments changed and the head, and deletes the
// segments emptied.
func (t *ledgerTx) write() error {
	for n := range t.dirty {
		if n < t.head.First {
			continue
		}
		raw, err := json.Marshal(t.docs[n])
		if err != nil {
			return err
		}
		if err := t.l.storage.Store(t.ctx, t.docKey(n), raw); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(t.head)
	if err != nil {
		return err
	}
	if err := t.l.storage.Store(t.ctx, layout.ledgerHead(t.l.appID, t.l.api), raw); err != nil {
		return err
	}
	for _, n := range t.gone {
		if err := t.l.storage.Delete(t.ctx, t.docKey(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// storeCode lists a fetched code in the route's ledger and writes it into
// the storage. A ledger that cannot be updated keeps the code out of the
// storage, so that a storage fault cannot unbound it: the code is served,
// not cached.
func (h *Handler) storeCode(ctx context.Context, cr *codeRequest, e *entry) {
	value, err := encodeEntry(cr.canonical, e)
	if err == nil {
		err = h.ledger.add(ctx, cr.key, value, e.expires, h.maxStored, h.clock.Now())
	}
	switch {
	case errors.Is(err, errDropped):
		h.logger.Debug("not storing a code: newer ones fill max_stored", zap.String("key", cr.key))
	case err != nil:
		h.faults.error("storing a code; it is served, not cached", zap.String("key", cr.key), zap.Error(err))
	}
}

// openLedger takes the ledger of the handler's storage, app and api from
// the pool.
func (h *Handler) openLedger(storage certmagic.Storage) error {
	name := h.api
	if h.api == apiShortLink && h.Permanent {
		// Apart from 30-day links, whose routes would otherwise push out
		// permanent ones, each asked again out of a lifetime budget.
		name = apiShortLink + "_permanent"
	}
	h.ledgerKey = h.storeID + "|" + h.appID + "|" + name
	l, _, err := ledgerPool.LoadOrNew(h.ledgerKey, func() (caddy.Destructor, error) {
		return newLedger(storage, h.appID, name, h.faults, h.logger), nil
	})
	if err != nil {
		return err
	}
	h.ledger = l.(*ledger)
	return nil
}

// sweepEvery is how often a route of temporary codes removes the expired
// ones, besides each time it stores one.
const sweepEvery = 10 * time.Minute

// startSweep removes expired temporary codes every sweepEvery, until
// Cleanup.
func (h *Handler) startSweep() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stopSweep = cancel
	go func() {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _ = protect(h.logger, h.ledger.name, func() (int, error) {
					n, err := h.ledger.sweep(ctx, h.clock.Now())
					if err != nil {
						h.faults.warn("removing expired codes", zap.Error(err))
					} else if n > 0 {
						h.logger.Debug("removed expired codes", zap.Int("removed", n))
					}
					return n, err
				})
			}
		}
	}()
}
