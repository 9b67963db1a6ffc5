package caps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// warnAt are the shares of LifetimeBudget at which a warning is logged.
var warnAt = []int{80, 95}

// Doc is what the storage keeps per app and group.
type Doc struct {
	// Generated counts the codes WeChat generated through this module,
	// with the calls whose outcome is unknown.
	Generated int `json:"generated"`
	// NumUsed is the last Num-Used header WeChat sent (get only).
	NumUsed int `json:"num_used,omitempty"`
	// Total counts what total caps have leased.
	Total *totalCount `json:"total,omitempty"`
	// Windows counts the codes leased in the current window of each cap,
	// keyed by the window's length.
	Windows map[string]*windowCount `json:"windows,omitempty"`
}

// totalCount is what total caps count against.
type totalCount struct {
	// Leased counts the codes spent or leased to an instance, and the
	// codes of handlers without a total cap.
	Leased int `json:"leased"`
}

type windowCount struct {
	Start time.Time `json:"start"`
	// Count is what instances leased in the window.
	Count int `json:"count"`
}

// total returns what total caps count against. A document from before
// leases counts the codes already generated.
func (doc *Doc) total() *totalCount {
	if doc.Total == nil {
		doc.Total = &totalCount{Leased: doc.Generated}
	}
	return doc.Total
}

// window returns the count of the current window of c, starting a new one
// when the last has ended. A window only moves forward: an instance whose
// clock lags takes the newer window it finds.
func (doc *Doc) window(c Cap, now time.Time) *windowCount {
	if doc.Windows == nil {
		doc.Windows = map[string]*windowCount{}
	}
	start := windowStart(c, now)
	w := doc.Windows[windowName(c)]
	if w == nil || w.Start.Before(start) {
		w = &windowCount{Start: start}
		doc.Windows[windowName(c)] = w
	}
	return w
}

func windowName(c Cap) string { return time.Duration(c.Per).String() }

// flushEvery is how often a book writes what it counted, and takes back
// leases that went unused meanwhile.
const flushEvery = 3 * time.Second

// docWait bounds a wait for the storage's lock on a document.
const docWait = 15 * time.Second

// book is one document (a storage, app and group) in this process: the
// codes counted but not yet written, and the leases drawn from it. Sets
// share it through bookPool, across reloads too.
type book struct {
	storage certmagic.Storage
	appID   string
	group   string
	// docKey and docLock name the document and its lock in the storage.
	docKey, docLock string
	logger          *zap.Logger
	faults          Faults
	now             func() time.Time

	mu sync.Mutex
	// generated counts the codes not yet written; unleased those of them
	// no total lease counted.
	generated int
	unleased  int
	// numUsed is the last Num-Used not yet written, or -1.
	numUsed int
	leases  map[*lease]bool
	stop    chan struct{}
	stopped chan struct{}
}

// bookPool keeps books across config reloads.
var bookPool = caddy.NewUsagePool()

// docLocks serialise the read-modify-write of each document within the
// process; the storage's lock does it between instances.
var docLocks sync.Map // storage key -> *sync.Mutex

func newBook(storage certmagic.Storage, appID, group string, opts Options) *book {
	return &book{
		storage: storage, appID: appID, group: group, docKey: opts.DocKey, docLock: opts.DocLock,
		logger: opts.Logger, faults: opts.Faults,
		now: opts.Now, numUsed: -1, leases: map[*lease]bool{},
	}
}

// start writes the counts every flushEvery until Destruct.
func (b *book) start() {
	b.stop, b.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(b.stopped)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.flush(true)
			}
		}
	}()
}

// Destruct writes what is left to write, once the last set is gone.
func (b *book) Destruct() error {
	if b.stop != nil {
		close(b.stop)
		<-b.stopped
	}
	b.flush(false)
	return nil
}

func (b *book) key() string { return b.docKey }

// counted notes a code WeChat generated, or a call whose outcome is
// unknown; leased says a total lease already counted it.
func (b *book) counted(leased bool) {
	b.mu.Lock()
	b.generated++
	if !leased {
		b.unleased++
	}
	b.mu.Unlock()
}

// sawNumUsed notes WeChat's Num-Used header.
func (b *book) sawNumUsed(n int) {
	b.mu.Lock()
	b.numUsed = n
	b.mu.Unlock()
}

// flush writes the counts, and with idle, takes back the permits of
// leases unused since the last flush, so that the last codes of a cap are
// not stranded in an idle instance.
func (b *book) flush(idle bool) {
	b.mu.Lock()
	var idles []*lease
	for l := range b.leases {
		if idle && l.idle() {
			idles = append(idles, l)
		}
	}
	pending := b.generated > 0 || b.numUsed >= 0
	b.mu.Unlock()
	if !pending && len(idles) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), docWait)
	defer cancel()
	err := b.update(ctx, func(doc *Doc) {
		for _, l := range idles {
			l.giveBack(doc, true)
		}
	})
	if err != nil {
		b.faults.Error("writing the code counts", zap.String("app", b.appID), zap.Error(err))
	}
}

// update loads the document, writes the pending counts into it, lets
// change edit it and stores it, under the process's lock and the
// storage's, so that no instance and no route sharing the document
// overwrites another's count. If it fails, the pending counts stay
// pending; what change did to leases is lost, which only ever leaves
// codes counted as spent.
func (b *book) update(ctx context.Context, change func(*Doc)) error {
	mu, _ := docLocks.LoadOrStore(b.key(), new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	unlock, err := b.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return b.write(ctx, change)
}

// lock takes the storage's lock on the document, waiting at most docWait,
// and returns what releases it. The release outlives ctx and logs a
// failure: another instance then waits for the storage to take the lock
// as stale.
func (b *book) lock(ctx context.Context) (unlock func(), err error) {
	lctx, cancel := context.WithTimeout(ctx, docWait)
	defer cancel()
	if err := b.storage.Lock(lctx, b.docLock); err != nil {
		return nil, fmt.Errorf("cannot take the storage lock %s: %w", b.docLock, err)
	}
	return func() {
		if err := b.storage.Unlock(context.WithoutCancel(ctx), b.docLock); err != nil {
			b.faults.Warn("unlocking a storage lock", zap.String("lock", b.docLock), zap.Error(err))
		}
	}, nil
}

// write is update's work under the locks.
func (b *book) write(ctx context.Context, change func(*Doc)) error {
	var doc Doc
	raw, err := b.storage.Load(ctx, b.key())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("loading: %w", err)
	default:
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fmt.Errorf("decoding %s: %w", b.key(), err)
		}
	}

	b.mu.Lock()
	generated, unleased, numUsed := b.generated, b.unleased, b.numUsed
	b.generated, b.unleased, b.numUsed = 0, 0, -1
	b.mu.Unlock()
	before, beforeUsed := doc.Generated, doc.NumUsed
	doc.Generated += generated
	if doc.Total != nil {
		doc.Total.Leased += unleased
	}
	if numUsed >= 0 {
		doc.NumUsed = numUsed
	}
	change(&doc)

	raw, err = json.Marshal(doc)
	if err == nil {
		err = b.storage.Store(ctx, b.key(), raw)
	}
	if err != nil {
		b.mu.Lock()
		b.generated += generated
		b.unleased += unleased
		if b.numUsed < 0 {
			b.numUsed = numUsed
		}
		b.mu.Unlock()
		return fmt.Errorf("storing: %w", err)
	}
	if spendsLifetime(b.group) {
		b.warnCrossing("codes generated by this module", before, doc.Generated)
	}
	if numUsed >= 0 {
		b.warnCrossing("codes used according to WeChat (Num-Used)", beforeUsed, numUsed)
	}
	return nil
}

func (b *book) warnCrossing(what string, before, after int) {
	for _, pct := range warnAt {
		limit := LifetimeBudget * pct / 100
		if before < limit && after >= limit {
			b.logger.Warn(fmt.Sprintf("%d%% of the lifetime budget of %d codes spent", pct, LifetimeBudget),
				zap.String("app", b.appID), zap.String("count", what), zap.Int("codes", after))
		}
	}
}
