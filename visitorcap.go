package wxqrcode

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/maypok86/otter/v2"
)

// maxVisitors bounds the visitors a per-visitor cap remembers. Past it,
// the least used are forgotten first, so a flood of new values (spoofed
// headers, many addresses) costs memory up to this bound and no more.
const maxVisitors = 100000

// visitorKey is what the table keys a visitor by: a hash of the
// template's value, so that each visitor costs the same few bytes however
// long the value (a header can be a megabyte).
func visitorKey(value string) string {
	sum := sha256.Sum256([]byte(value))
	return string(sum[:16])
}

// visitorPool keeps per-visitor counts across config reloads.
var visitorPool = caddy.NewUsagePool()

// visitorCap is a cap per value of a template (cap <n> per <d> by <t>),
// counted in this instance's memory.
type visitorCap struct {
	cap    Cap
	counts *otter.Cache[string, visitorCount]
}

// visitorCount is one visitor's codes in the window that starts at start.
type visitorCount struct {
	start time.Time
	codes int
}

func (*visitorCap) Destruct() error { return nil }

func newVisitorCap(c Cap) (*visitorCap, error) {
	per := time.Duration(c.Per)
	counts, err := otter.New(&otter.Options[string, visitorCount]{
		MaximumSize: maxVisitors,
		// A count is forgotten when its window ends.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, visitorCount]) time.Duration {
			return max(time.Until(e.Value.start.Add(per)), time.Millisecond)
		}),
	})
	if err != nil {
		return nil, err
	}
	return &visitorCap{cap: c, counts: counts}, nil
}

// openVisitorCaps takes the per-visitor caps of a handler from the pool.
func openVisitorCaps(storeID string, caps []Cap) ([]*visitorCap, []string, error) {
	var vcs []*visitorCap
	var keys []string
	for _, c := range caps {
		if c.By == "" {
			continue
		}
		key := fmt.Sprintf("%s|%d|%s|%s", storeID, c.Codes, time.Duration(c.Per), c.By)
		v, _, err := visitorPool.LoadOrNew(key, func() (caddy.Destructor, error) { return newVisitorCap(c) })
		if err != nil {
			for _, k := range keys {
				_, _ = visitorPool.Delete(k)
			}
			return nil, nil, err
		}
		vcs = append(vcs, v.(*visitorCap))
		keys = append(keys, key)
	}
	return vcs, keys, nil
}

// take counts a new code for visitor, or returns the 429 if the visitor's
// window is full. It returns the window the code was counted in.
func (v *visitorCap) take(visitor string, now time.Time) (time.Time, error) {
	start := windowStart(v.cap, now)
	full := false
	v.counts.Compute(visitor, func(old visitorCount, found bool) (visitorCount, otter.ComputeOp) {
		if !found || old.start.Before(start) {
			return visitorCount{start: start, codes: 1}, otter.WriteOp
		}
		if old.codes >= v.cap.Codes {
			full = true
			return old, otter.CancelOp
		}
		old.codes++
		return old, otter.WriteOp
	})
	if full {
		p := localProblem(http.StatusTooManyRequests, codeRateCapped,
			fmt.Sprintf("wxqrcode: %d new codes per %s for each %s reached", v.cap.Codes, time.Duration(v.cap.Per), v.cap.By))
		p.retryAfter = start.Add(time.Duration(v.cap.Per)).Sub(now)
		return start, p
	}
	return start, nil
}

// put gives back a code counted in the window at start.
func (v *visitorCap) put(visitor string, start time.Time) {
	v.counts.ComputeIfPresent(visitor, func(old visitorCount) (visitorCount, otter.ComputeOp) {
		if old.start.Equal(start) && old.codes > 0 {
			old.codes--
		}
		return old, otter.WriteOp
	})
}

// countVisitor counts a request that goes on to fetch a new code against
// the handler's per-visitor caps, resolving their templates with the
// request's replacer. It returns what gives the codes back.
func (h *Handler) countVisitor(ctx context.Context) (func(), error) {
	if len(h.visitors) == 0 {
		return func() {}, nil
	}
	repl, _ := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	now := time.Now()
	var undo []func()
	giveBack := func() {
		for _, u := range undo {
			u()
		}
	}
	for _, v := range h.visitors {
		visitor := visitorKey(repl.ReplaceAll(v.cap.By, ""))
		start, err := v.take(visitor, now)
		if err != nil {
			giveBack()
			return nil, err
		}
		undo = append(undo, func() { v.put(visitor, start) })
	}
	return giveBack, nil
}
