package wxqrcode

import (
	"context"
	"slices"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
)

// The layout is what storages already hold: changing a name strands what
// earlier versions stored. Locks are apart from what they guard.
func TestStorageLayout(t *testing.T) {
	key := cacheKey("api=qrcode&appid=wx1&path=a")
	for got, want := range map[string]string{
		layout.code(key):                           "wxqrcode/codes/" + key[:2] + "/" + key,
		layout.codeLock(key):                       "wxqrcode/locks/codes/" + key,
		layout.token("wx1", tokenStable):           "wxqrcode/tokens/wx1/stable.json",
		layout.tokenLock("wx1", tokenStable):       "wxqrcode/locks/tokens/wx1/stable",
		layout.ledgerHead("wx1", apiUnlimited):     "wxqrcode/stored/wx1/unlimited/head",
		layout.ledgerSegment("wx1", apiQRCode, 7):  "wxqrcode/stored/wx1/qrcode/seg/7",
		layout.ledgerLock("wx1", apiQRCode):        "wxqrcode/locks/stored/wx1/qrcode",
		layout.quota("wx1", caps.GroupLimited):     "wxqrcode/quota/wx1/limited.json",
		layout.quotaLock("wx1", caps.GroupLimited): "wxqrcode/locks/quota/wx1/limited",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// Listing finds the codes and the quota documents only, whatever else a
// storage module keeps beside them (a lock of an earlier version, a
// temporary file).
func TestStorageLayoutListing(t *testing.T) {
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	key := cacheKey("x")
	for _, k := range []string{
		layout.code(key), "wxqrcode/codes/lock/" + key, "wxqrcode/codes/" + key[:2] + "/" + key + ".tmp",
		"wxqrcode/codes/00/" + key, layout.quota("wx1", caps.GroupUnlimited), layout.quota("wx1", caps.GroupLimited) + ".lock",
	} {
		if err := storage.Store(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	codes, err := layout.codes(ctx, storage)
	if err != nil || !slices.Equal(codes, []string{layout.code(key)}) {
		t.Errorf("codes %q (%v), want only %q", codes, err, layout.code(key))
	}
	quotas, err := layout.quotas(ctx, storage)
	if err != nil || len(quotas) != 1 || quotas[0] != (quotaKey{key: layout.quota("wx1", caps.GroupUnlimited), appID: "wx1", group: caps.GroupUnlimited}) {
		t.Errorf("quotas %+v (%v), want wx1's unlimited", quotas, err)
	}
	empty := &certmagic.FileStorage{Path: t.TempDir()}
	if codes, err := layout.codes(ctx, empty); err != nil || len(codes) != 0 {
		t.Errorf("an empty storage lists %q (%v)", codes, err)
	}
}
