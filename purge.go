package wxqrcode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// purgeCode removes the code of canonical from the storage, then from the
// memory caches, so that no request in between puts it back in memory
// from the storage.
func (st *store) purgeCode(ctx context.Context, canonical string) (stored bool, memory int, err error) {
	key := cacheKey(canonical)
	// Exists first: some storages delete a missing key without an error.
	if st.storage.Exists(ctx, layout.code(key)) {
		err = st.storage.Delete(ctx, layout.code(key))
		stored = err == nil
		if err != nil {
			err = fmt.Errorf("removing the code from the storage: %v", err)
		}
	}
	memory = st.purgeMemory(func(k string) bool {
		return k == canonical || strings.HasPrefix(k, canonical+"#")
	})
	caddy.Log().Named("admin.api.wxqrcode").Info("purged code",
		zap.String("key", key),
		zap.Bool("stored", stored),
		zap.Int("memory_entries", memory),
		zap.Error(err))
	return stored, memory, err
}

// purgeApp removes every code of appID from the storage, then from the
// memory caches.
func (st *store) purgeApp(ctx context.Context, appID string) purged {
	res := purged{Storage: storageName(st.storage)}
	keys, err := layout.codes(ctx, st.storage)
	if err != nil {
		res.Error = fmt.Sprintf("listing the codes: %v", err)
	}
	failed := 0
	for _, key := range keys {
		raw, err := st.storage.Load(ctx, key)
		if err != nil {
			continue // gone since the listing
		}
		head, _, _ := bytes.Cut(raw, []byte("\n"))
		var meta entryMeta
		if json.Unmarshal(head, &meta) != nil || appOf(meta.Request) != appID {
			continue
		}
		if err := st.storage.Delete(ctx, key); err != nil {
			failed++
			res.Error = fmt.Sprintf("removing %d codes: %v", failed, err)
			continue
		}
		res.Codes++
	}
	res.Memory = st.purgeMemory(func(k string) bool {
		canonical, _, _ := strings.Cut(k, "#")
		return appOf(canonical) == appID
	})
	caddy.Log().Named("admin.api.wxqrcode").Info("purged app",
		zap.String("appid", appID),
		zap.String("storage", res.Storage),
		zap.Int("codes", res.Codes),
		zap.Int("memory_entries", res.Memory),
		zap.String("error", res.Error))
	return res
}

// appOf is the appid of a canonical request.
func appOf(canonical string) string {
	q, _ := url.ParseQuery(canonical)
	return q.Get("appid")
}

// purgeMemory removes the entries whose key matches from the memory
// caches of st, and counts them.
func (st *store) purgeMemory(match func(key string) bool) int {
	n := 0
	for _, mem := range st.mems {
		n += mem.purge(match)
	}
	return n
}
