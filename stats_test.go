package wxqrcode

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/certmagic"
)

// credStorage is a storage module whose fields hold a credential and
// which has no String.
type credStorage struct {
	certmagic.Storage
	Password string
}

// namedStorage names itself, as storage modules do to redact.
type namedStorage struct{ credStorage }

func (namedStorage) String() string { return "redis://cache.internal:6379" }

// caddy wxqrcode stats names a storage by its String, or else its type,
// never by its fields.
func TestStatsNamesStorageSafely(t *testing.T) {
	const password = "hunter2-storage-password"
	files := &certmagic.FileStorage{Path: t.TempDir()}
	plain := credStorage{files, password}
	for _, tt := range []struct {
		storage certmagic.Storage
		want    string
	}{
		{plain, "storage: wxqrcode.credStorage\n"},
		{&plain, "storage: *wxqrcode.credStorage\n"},
		{namedStorage{plain}, "storage: redis://cache.internal:6379\n"},
		{files, "storage: FileStorage:" + files.Path + "\n"},
	} {
		var out bytes.Buffer
		readStats(context.Background(), tt.storage).print(&out)
		if !strings.HasPrefix(out.String(), tt.want) || strings.Contains(out.String(), password) {
			t.Errorf("printed %q, want it to start %q and hold no password", out.String(), tt.want)
		}
	}
}
