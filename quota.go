package wxqrcode

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

// Cap limits the new codes a handler may have WeChat generate: at most
// Codes in each window of length Per, or at most Codes in all when Per is
// zero. Counts are kept in the storage per app, so they hold across
// restarts and across instances sharing the storage. With By, the cap is
// per visitor instead, kept in memory.
type Cap struct {
	// Codes is how many new codes the cap allows.
	Codes int `json:"codes"`
	// Per is the window; zero makes the cap a total budget.
	Per caddy.Duration `json:"per,omitempty"`
	// By is a template, such as {client_ip} or {header.X-User}, that
	// makes the cap count per value: at most Codes new codes per window
	// for each. Requests whose template is empty share one count. Needs
	// Per.
	By string `json:"by,omitempty"`
}

// lifetimeBudget is WeChat's limit on codes from createQRCode and get
// together, per app, for ever.
const lifetimeBudget = 100000

// warnAt are the shares of lifetimeBudget at which a warning is logged.
var warnAt = []int{80, 95}

// The counting groups: qrcode and wxacode share WeChat's lifetime budget,
// unlimited has its own count, and so has each of the official account's
// codes: oa_permanent spends the account's own budget of 100,000.
const (
	groupLimited     = "limited"
	groupUnlimited   = "unlimited"
	groupOATemporary = apiOATemporary
	groupOAPermanent = apiOAPermanent
)

// quotaDoc is what the storage keeps per app and group.
type quotaDoc struct {
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

// errCapsUnavailable means the counts could not be read or written, so the
// caps cannot be enforced.
var errCapsUnavailable = errors.New("cannot read or write the code counts")

// flushEvery is how often a book writes what it counted, and takes back
// leases that went unused meanwhile.
const flushEvery = 3 * time.Second

// docWait bounds a wait for the storage's lock on a quota document.
const docWait = 15 * time.Second

// book is one quota document (a storage, app and group) in this process:
// the codes counted but not yet written, and the leases drawn from it.
// Handlers share it through bookPool, across reloads too.
type book struct {
	storage certmagic.Storage
	appID   string
	group   string
	logger  *zap.Logger
	faults  *faultLog
	now     func() time.Time

	mu sync.Mutex
	// generated counts the codes not yet written; unleased those of them
	// no total lease counted.
	generated int
	unleased  int
	// numUsed is the last Num-Used not yet written, or -1.
	numUsed int
	leases  map[*capLease]bool
	stop    chan struct{}
	stopped chan struct{}
}

// bookPool keeps books across config reloads.
var bookPool = caddy.NewUsagePool()

// docLocks serialise the read-modify-write of each quota document within
// the process; the storage's lock does it between instances.
var docLocks sync.Map // storage key -> *sync.Mutex

func newBook(storage certmagic.Storage, appID, group string, logger *zap.Logger) *book {
	return &book{
		storage: storage, appID: appID, group: group, logger: logger, faults: newFaultLog(logger),
		now: time.Now, numUsed: -1, leases: map[*capLease]bool{},
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

// Destruct writes what is left to write, once the last handler is gone.
func (b *book) Destruct() error {
	if b.stop != nil {
		close(b.stop)
		<-b.stopped
	}
	b.flush(false)
	return nil
}

func (b *book) key() string {
	return "wxqrcode/quota/" + b.appID + "/" + b.group + ".json"
}

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
	var idles []*capLease
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
	err := b.update(ctx, func(doc *quotaDoc) {
		for _, l := range idles {
			l.giveBack(doc, true)
		}
	})
	if err != nil {
		b.faults.error("writing the code counts", zap.String("app", b.appID), zap.Error(err))
	}
}

// update loads the document, writes the pending counts into it, lets
// change edit it and stores it, under the process's lock and the
// storage's, so that no instance and no route sharing the document
// overwrites another's count. If it fails, the pending counts stay
// pending; what change did to leases is lost, which only ever leaves
// codes counted as spent.
func (b *book) update(ctx context.Context, change func(*quotaDoc)) error {
	mu, _ := docLocks.LoadOrStore(b.key(), new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	lock := storeLock{storage: b.storage, name: b.key(), faults: b.faults}
	_, err := lockedDo(ctx, lock, docWait, nil, func() (struct{}, error) {
		return struct{}{}, b.write(ctx, change)
	})
	return err
}

// write is update's work under the locks.
func (b *book) write(ctx context.Context, change func(*quotaDoc)) error {
	var doc quotaDoc
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
	if b.group == groupLimited || b.group == groupOAPermanent {
		b.warnCrossing("codes generated by this module", before, doc.Generated)
	}
	if numUsed >= 0 {
		b.warnCrossing("codes used according to WeChat (Num-Used)", beforeUsed, numUsed)
	}
	return nil
}

func (b *book) warnCrossing(what string, before, after int) {
	for _, pct := range warnAt {
		limit := lifetimeBudget * pct / 100
		if before < limit && after >= limit {
			b.logger.Warn(fmt.Sprintf("%d%% of the lifetime budget of %d codes spent", pct, lifetimeBudget),
				zap.String("app", b.appID), zap.String("count", what), zap.Int("codes", after))
		}
	}
}

// total returns what total caps count against. A document from before
// leases counts the codes already generated.
func (doc *quotaDoc) total() *totalCount {
	if doc.Total == nil {
		doc.Total = &totalCount{Leased: doc.Generated}
	}
	return doc.Total
}

// window returns the count of the current window of c, starting a new one
// when the last has ended. A window only moves forward: an instance whose
// clock lags takes the newer window it finds.
func (doc *quotaDoc) window(c Cap, now time.Time) *windowCount {
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

// windowStart aligns windows to the Unix epoch, so every instance agrees.
func windowStart(c Cap, t time.Time) time.Time {
	return t.UTC().Truncate(time.Duration(c.Per))
}

func windowName(c Cap) string { return time.Duration(c.Per).String() }

// checkCaps refuses caps that cannot work, naming the one at fault: two
// caps on one window would share its count.
func checkCaps(caps []Cap) error {
	type slot struct {
		per caddy.Duration
		by  string
	}
	seen := map[slot]bool{}
	for i, c := range caps {
		if err := checkCap(c, seen[slot{c.Per, c.By}]); err != nil {
			return &optionError{"cap", i, err}
		}
		seen[slot{c.Per, c.By}] = true
	}
	return nil
}

// checkCap refuses a cap that cannot work; twin says a cap before it has
// the same window and template.
func checkCap(c Cap, twin bool) error {
	if c.Codes < 1 || c.Per < 0 {
		return fmt.Errorf("cap: want a positive number of codes and a positive window, got %d per %s", c.Codes, time.Duration(c.Per))
	}
	if c.By != "" && c.Per == 0 {
		return fmt.Errorf("cap: by needs a window: cap <n> per <duration> by <template>")
	}
	switch {
	case !twin:
		return nil
	case c.Per == 0:
		return fmt.Errorf("cap: two total budgets; keep one")
	case c.By != "":
		return fmt.Errorf("cap: two caps per %s by %s; keep one", time.Duration(c.Per), c.By)
	}
	return fmt.Errorf("cap: two caps per %s; keep one", time.Duration(c.Per))
}
