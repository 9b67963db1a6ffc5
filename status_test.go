package wxqrcode

import (
	"testing"
	"time"
)

func TestUntilBeijingMidnight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		utc  string
		want time.Duration
	}{
		{"2026-11-23T15:59:00Z", time.Minute},      // 23:59 in Beijing
		{"2026-11-23T16:00:00Z", 24 * time.Hour},   // midnight exactly
		{"2026-11-23T00:00:00Z", 16 * time.Hour},   // 08:00 in Beijing
		{"2026-12-31T15:30:00Z", 30 * time.Minute}, // 23:30 on new year's eve
	}
	for _, tt := range tests {
		now, err := time.Parse(time.RFC3339, tt.utc)
		if err != nil {
			t.Fatal(err)
		}
		if got := untilBeijingMidnight(now); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.utc, got, tt.want)
		}
	}
}
