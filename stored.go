package wxqrcode

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strconv"
	"time"

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
// segments of up to ledgerSegment codes. Adding a code removes the oldest
// past the bound and the expired temporary codes at the head: the work is
// the codes removed, never a listing of the storage. It is updated under
// the storage's lock, before the code is written, so the codes in the
// storage never outnumber the bound.
type ledger struct {
	storage certmagic.Storage
	prefix  string
	lock    storeLock
	now     func() time.Time
}

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

func newLedger(storage certmagic.Storage, appID, api string, faults *faultLog) *ledger {
	prefix := "wxqrcode/stored/" + appID + "/" + api + "/"
	return &ledger{
		storage: storage,
		prefix:  prefix,
		lock:    storeLock{storage: storage, name: "wxqrcode/locks/stored/" + appID + "/" + api, faults: faults},
		now:     func() time.Time { return expiryClock() },
	}
}

// ledgerWait bounds the wait for a ledger's lock.
const ledgerWait = 30 * time.Second

// add records key as stored now and removes the oldest codes past max,
// and the expired ones at the head; it returns how many it removed.
func (l *ledger) add(ctx context.Context, key string, expires time.Time, max int) (int, error) {
	e := ledgerEntry{Key: key}
	if !expires.IsZero() {
		e.Expires = expires.Unix()
	}
	return lockedDo(ctx, l.lock, ledgerWait, nil, func() (int, error) {
		t, err := l.open(ctx)
		if err != nil {
			return 0, err
		}
		last, err := t.doc(t.head.Last)
		if err != nil {
			return 0, err
		}
		if len(last.Keys) >= ledgerSegment {
			t.head.Last++
			last = &ledgerDoc{}
			t.docs[t.head.Last] = last
		}
		last.Keys = append(last.Keys, e)
		t.dirty[t.head.Last] = true
		t.head.Count++
		removed, err := t.trim(max)
		if err != nil {
			return removed, err
		}
		return removed, t.write()
	})
}

// sweep removes the expired codes at the head.
func (l *ledger) sweep(ctx context.Context) (int, error) {
	return lockedDo(ctx, l.lock, ledgerWait, nil, func() (int, error) {
		t, err := l.open(ctx)
		if err != nil {
			return 0, err
		}
		removed, err := t.trim(int(^uint(0) >> 1))
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
}

func (l *ledger) open(ctx context.Context) (*ledgerTx, error) {
	t := &ledgerTx{ctx: ctx, l: l, docs: map[int]*ledgerDoc{}, dirty: map[int]bool{}}
	raw, err := l.storage.Load(ctx, l.prefix+"head")
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

func (t *ledgerTx) docKey(n int) string { return t.l.prefix + "seg/" + strconv.Itoa(n) }

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

// trim removes codes from the head while there are more than max, or the
// head's has expired.
func (t *ledgerTx) trim(max int) (int, error) {
	now := t.l.now().Unix()
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
		if t.head.Count <= max && (e.Expires == 0 || e.Expires > now) {
			break
		}
		if err := t.l.storage.Delete(t.ctx, storageKey(e.Key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
	if err := t.l.storage.Store(t.ctx, t.l.prefix+"head", raw); err != nil {
		return err
	}
	for _, n := range t.gone {
		if err := t.l.storage.Delete(t.ctx, t.docKey(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// record adds a code about to be stored to the route's ledger, logging
// what it removed. A ledger that cannot be updated keeps the code out of
// the storage, so that a storage fault cannot unbound it.
func (h *Handler) record(ctx context.Context, cr *codeRequest, e *entry) bool {
	removed, err := h.ledger.add(ctx, cr.key, e.expires, h.maxStored)
	if err != nil {
		h.faults.error("recording a code among the stored; it is served, not cached", zap.String("key", cr.key), zap.Error(err))
		return false
	}
	if removed > 0 {
		h.logger.Debug("removed stored codes past max_stored or expired",
			zap.String("api", cr.api), zap.Int("removed", removed), zap.Int("max_stored", h.maxStored))
	}
	return true
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
				_, _ = protect(h.logger, h.ledger.prefix, func() (int, error) {
					n, err := h.ledger.sweep(ctx)
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
