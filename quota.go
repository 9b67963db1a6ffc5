package wxqrcode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Cap limits the new codes a handler may have WeChat generate: at most
// Codes in each window of length Per, or at most Codes in all when Per is
// zero. Counts are kept in the storage per app, so they hold across
// restarts and across instances sharing the storage.
type Cap struct {
	// Codes is how many new codes the cap allows.
	Codes int `json:"codes"`
	// Per is the window; zero makes the cap a total budget.
	Per caddy.Duration `json:"per,omitempty"`
	By  string         `json:"by,omitempty"`
}

// lifetimeBudget is WeChat's limit on codes from createQRCode and get
// together, per app, for ever.
const lifetimeBudget = 100000

// warnAt are the shares of lifetimeBudget at which a warning is logged.
var warnAt = []int{80, 95}

// The counting groups: qrcode and wxacode share WeChat's lifetime budget,
// unlimited has its own count.
const (
	groupLimited   = "limited"
	groupUnlimited = "unlimited"
)

// quotaDoc is what the storage keeps per app and group.
type quotaDoc struct {
	// Generated counts the codes WeChat generated through this module.
	Generated int `json:"generated"`
	// NumUsed is the last Num-Used header WeChat sent (get only).
	NumUsed int `json:"num_used,omitempty"`
	// Windows counts the codes in the current window of each cap, keyed
	// by the window's length.
	Windows map[string]*windowCount `json:"windows,omitempty"`
}

type windowCount struct {
	Start time.Time `json:"start"`
	Count int       `json:"count"`
}

// quota counts the codes of one app and group and enforces the caps.
type quota struct {
	storage certmagic.Storage
	appID   string
	group   string
	caps    []Cap
	logger  *zap.Logger
	faults  *faultLog
}

// quotaLocks serialise the read-modify-write of each quota document within
// the process; the storage's lock does it between instances.
var quotaLocks sync.Map // storage key -> *sync.Mutex

func (q *quota) key() string {
	return "wxqrcode/quota/" + q.appID + "/" + q.group + ".json"
}

// errCapsUnavailable means the counts could not be read or written, so the
// caps cannot be enforced.
var errCapsUnavailable = errors.New("cannot read or write the code counts")

// update loads the document, lets change edit it and stores it, under the
// process's lock and the storage's, so that no instance and no route
// sharing the document overwrites another's count. A storage fault is
// errCapsUnavailable with caps; without, the counts only inform, and it is
// logged and ignored.
func (q *quota) update(ctx context.Context, change func(*quotaDoc) error) error {
	mu, _ := quotaLocks.LoadOrStore(q.key(), new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	err := q.updateLocked(ctx, change)
	var p *problem
	if err != nil && !errors.As(err, &p) {
		q.faults.error("updating the code counts", zap.String("app", q.appID), zap.Error(err))
		if len(q.caps) > 0 {
			return errCapsUnavailable
		}
		return nil
	}
	return err
}

func (q *quota) updateLocked(ctx context.Context, change func(*quotaDoc) error) error {
	if err := q.storage.Lock(ctx, q.key()); err != nil {
		return fmt.Errorf("locking: %w", err)
	}
	defer func() { _ = q.storage.Unlock(context.WithoutCancel(ctx), q.key()) }()
	var doc quotaDoc
	raw, err := q.storage.Load(ctx, q.key())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("loading: %w", err)
	default:
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fmt.Errorf("decoding %s: %w", q.key(), err)
		}
	}
	if err := change(&doc); err != nil {
		return err
	}
	raw, err = json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := q.storage.Store(ctx, q.key(), raw); err != nil {
		return fmt.Errorf("storing: %w", err)
	}
	return nil
}

// reserve counts one new code against every cap, or returns the problem
// of the first cap it would break. It is done before the call so that
// concurrent misses cannot overspend; a failed call gives it back with
// release. Without caps it does nothing: commit counts the code.
func (q *quota) reserve(ctx context.Context, now time.Time) error {
	if len(q.caps) == 0 {
		return nil
	}
	return q.update(ctx, func(doc *quotaDoc) error {
		for _, c := range q.caps {
			if c.Per == 0 {
				if doc.Generated >= c.Codes {
					return localProblem(http.StatusForbidden, codeBudgetSpent,
						fmt.Sprintf("wxqrcode: the budget of %d new codes is spent", c.Codes))
				}
				continue
			}
			w := doc.window(c, now)
			if w.Count >= c.Codes {
				p := localProblem(http.StatusTooManyRequests, codeRateCapped,
					fmt.Sprintf("wxqrcode: %d new codes per %s reached", c.Codes, time.Duration(c.Per)))
				p.retryAfter = w.Start.Add(time.Duration(c.Per)).Sub(now)
				return p
			}
		}
		for _, c := range q.caps {
			if c.Per != 0 {
				doc.window(c, now).Count++
			}
		}
		q.generated(doc)
		return nil
	})
}

// release gives back a reservation made at reservedAt whose call
// generated no code.
func (q *quota) release(ctx context.Context, reservedAt time.Time) {
	if len(q.caps) == 0 {
		return
	}
	_ = q.update(ctx, func(doc *quotaDoc) error {
		for _, c := range q.caps {
			if w := doc.Windows[windowName(c)]; c.Per != 0 && w != nil && w.Start.Equal(windowStart(c, reservedAt)) && w.Count > 0 {
				w.Count--
			}
		}
		if doc.Generated > 0 {
			doc.Generated--
		}
		return nil
	})
}

// commit records a code WeChat generated: counted here when there are no
// caps (reserve counted it otherwise), with WeChat's Num-Used if it sent
// one (numUsed >= 0). It runs after the answer.
func (q *quota) commit(ctx context.Context, numUsed int) {
	if len(q.caps) > 0 && numUsed < 0 {
		return
	}
	_ = q.update(ctx, func(doc *quotaDoc) error {
		if len(q.caps) == 0 {
			q.generated(doc)
		}
		if numUsed >= 0 {
			q.warnCrossing("codes used according to WeChat (Num-Used)", doc.NumUsed, numUsed)
			doc.NumUsed = numUsed
		}
		return nil
	})
}

// generated counts one code, warning as the count crosses a threshold.
func (q *quota) generated(doc *quotaDoc) {
	doc.Generated++
	if q.group == groupLimited {
		q.warnCrossing("codes generated by this module", doc.Generated-1, doc.Generated)
	}
}

func (q *quota) warnCrossing(what string, before, after int) {
	for _, pct := range warnAt {
		limit := lifetimeBudget * pct / 100
		if before < limit && after >= limit {
			q.logger.Warn(fmt.Sprintf("%d%% of the lifetime budget of %d codes spent", pct, lifetimeBudget),
				zap.String("app", q.appID), zap.String("count", what), zap.Int("codes", after))
		}
	}
}

// window returns the count of the current window of c, starting a new one
// when the last has ended.
func (doc *quotaDoc) window(c Cap, now time.Time) *windowCount {
	if doc.Windows == nil {
		doc.Windows = map[string]*windowCount{}
	}
	start := windowStart(c, now)
	w := doc.Windows[windowName(c)]
	if w == nil || !w.Start.Equal(start) {
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

// checkCaps refuses caps that cannot work: two caps on one window would
// share its count.
func checkCaps(caps []Cap) error {
	seen := map[caddy.Duration]bool{}
	for _, c := range caps {
		if c.Codes < 1 || c.Per < 0 {
			return fmt.Errorf("cap: want a positive number of codes and a positive window, got %d per %s", c.Codes, time.Duration(c.Per))
		}
		if seen[c.Per] {
			if c.Per == 0 {
				return fmt.Errorf("cap: two total budgets; keep one")
			}
			return fmt.Errorf("cap: two caps per %s; keep one", time.Duration(c.Per))
		}
		seen[c.Per] = true
	}
	return nil
}

// validAppID keeps the appid usable in a storage key. WeChat appids are
// "wx" and 16 hex digits.
func validAppID(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}
