package caps

import (
	"crypto/sha256"
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

func newVisitorCap(c Cap, now func() time.Time) (*visitorCap, error) {
	per := time.Duration(c.Per)
	counts, err := otter.New(&otter.Options[string, visitorCount]{
		MaximumSize: maxVisitors,
		// A count is forgotten when its window ends.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, visitorCount]) time.Duration {
			return max(e.Value.start.Add(per).Sub(now()), time.Millisecond)
		}),
	})
	if err != nil {
		return nil, err
	}
	return &visitorCap{cap: c, counts: counts}, nil
}

// take counts a new code for visitor, or refuses it with a FullError if
// the visitor's window is full. It returns the window the code was
// counted in.
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
		return start, &FullError{Cap: v.cap, RetryAfter: start.Add(time.Duration(v.cap.Per)).Sub(now)}
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
