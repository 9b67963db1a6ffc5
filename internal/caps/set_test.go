package caps

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// A set reserves a code from each of its caps, takes back a released
// one, counts a settled one, and on Close gives back what it leased and
// did not spend and writes its counts.
func TestSetReserveSettleClose(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	s, err := Open(storage, "test:"+t.Name(), "wx1", GroupLimited,
		[]Cap{{Codes: 2}, {Codes: 5, Per: caddy.Duration(time.Hour)}}, Options{DocKey: testDoc, DocLock: testLock, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := s.Reserve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Settle(first, 42)
	refused, err := s.Reserve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Release(refused)
	last, err := s.Reserve(ctx)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	s.Settle(last, -1)
	_, err = s.Reserve(ctx)
	var spent *SpentError
	if !errors.As(err, &spent) || spent.Error() != "the budget of 2 new codes is spent" {
		t.Fatalf("%v, want the budget of 2 spent", err)
	}
	s.Close()

	raw, err := storage.Load(ctx, "wxqrcode/quota/wx1/limited.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc Doc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Generated != 2 || doc.NumUsed != 42 || doc.Total.Leased != 2 || doc.Windows["1h0m0s"].Count != 2 {
		t.Errorf("stored %+v, total %+v, window %+v; want 2 generated and leased, Num-Used 42",
			doc, *doc.Total, *doc.Windows["1h0m0s"])
	}
}

// Check names the cap at fault by its index.
func TestCheck(t *testing.T) {
	hour := caddy.Duration(time.Hour)
	for _, tt := range []struct {
		caps  []Cap
		index int
		err   string
	}{
		{[]Cap{{Codes: 5}, {Codes: 0, Per: hour}}, 1, "cap: want a positive number of codes and a positive window, got 0 per 1h0m0s"},
		{[]Cap{{Codes: 5, By: "{client_ip}"}}, 0, "cap: by needs a window: cap <n> per <duration> by <template>"},
		{[]Cap{{Codes: 5}, {Codes: 9, Per: hour}, {Codes: 6}}, 2, "cap: two total budgets; keep one"},
		{[]Cap{{Codes: 5, Per: hour}, {Codes: 9, Per: hour, By: "{client_ip}"}, {Codes: 6, Per: hour}}, 2, "cap: two caps per 1h0m0s; keep one"},
	} {
		if i, err := Check(tt.caps); err == nil || i != tt.index || err.Error() != tt.err {
			t.Errorf("Check(%v) = %d, %v; want %d, %s", tt.caps, i, err, tt.index, tt.err)
		}
	}
	if _, err := Check([]Cap{{Codes: 5}, {Codes: 9, Per: hour}, {Codes: 2, Per: hour, By: "{client_ip}"}}); err != nil {
		t.Errorf("distinct caps: %v", err)
	}
}
