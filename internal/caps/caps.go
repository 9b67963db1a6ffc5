// Package caps counts the new codes handlers have WeChat generate against
// their caps: totals and windows per app, counted in a storage that a
// cluster shares and leased to each instance in blocks, and caps per
// visitor, counted in memory. A handler opens a Set for its storage, app
// and group, reserves a code before each call to WeChat, and settles or
// releases it after; a refusal is a SpentError, a FullError or
// ErrUnavailable.
package caps

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
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

// LifetimeBudget is WeChat's limit on codes from createQRCode and get
// together, per app, for ever; an official account's permanent codes have
// one of the same size.
const LifetimeBudget = 100000

// The counting groups: qrcode and wxacode share WeChat's lifetime budget,
// unlimited has its own count, and so has each of the official account's
// codes: oa_permanent spends the account's own budget of 100,000.
const (
	GroupLimited     = "limited"
	GroupUnlimited   = "unlimited"
	GroupOATemporary = "oa_temporary"
	GroupOAPermanent = "oa_permanent"
	// GroupLinks counts URL Links and URL Schemes, which share a daily
	// budget of 500,000 per app; short links have counts of their own,
	// permanent ones spending a lifetime budget of 100,000.
	GroupLinks              = "links"
	GroupShortLink          = "shortlink"
	GroupPermanentShortLink = "shortlink_permanent"
)

// spendsLifetime says whether a group's codes spend a lifetime budget.
func spendsLifetime(group string) bool {
	return group == GroupLimited || group == GroupOAPermanent || group == GroupPermanentShortLink
}

// Check refuses caps that cannot work, with the index of the one at
// fault: two caps on one window would share its count.
func Check(cs []Cap) (int, error) {
	type slot struct {
		per caddy.Duration
		by  string
	}
	seen := map[slot]bool{}
	for i, c := range cs {
		if err := check(c, seen[slot{c.Per, c.By}]); err != nil {
			return i, err
		}
		seen[slot{c.Per, c.By}] = true
	}
	return 0, nil
}

// check refuses a cap that cannot work; twin says a cap before it has the
// same window and template.
func check(c Cap, twin bool) error {
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

// windowStart aligns windows to the Unix epoch, so every instance agrees.
func windowStart(c Cap, t time.Time) time.Time {
	return t.UTC().Truncate(time.Duration(c.Per))
}
