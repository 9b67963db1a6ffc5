package wxqrcode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/certmagic"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
)

// readStats reads the codes and counts in storage.
func readStats(ctx context.Context, storage certmagic.Storage) storageStats {
	st := storageStats{Storage: storageName(storage)}
	keys, err := layout.codes(ctx, storage)
	if err != nil {
		st.Error = fmt.Sprintf("listing the codes: %v", err)
		return st
	}
	codes := map[appCodes]int{} // by api and app
	for _, key := range keys {
		raw, err := storage.Load(ctx, key)
		if err != nil {
			continue // gone since the listing
		}
		st.Codes++
		st.Bytes += int64(len(raw))
		head, _, _ := bytes.Cut(raw, []byte("\n"))
		var meta entryMeta
		if _, err := decodeEntry(raw); err != nil || json.Unmarshal(head, &meta) != nil {
			st.NotWhole++
			continue
		}
		req, _ := url.ParseQuery(meta.Request)
		codes[appCodes{API: req.Get("api"), AppID: req.Get("appid")}]++
	}
	for _, k := range slices.SortedFunc(maps.Keys(codes), func(a, b appCodes) int {
		return strings.Compare(a.API+" "+a.AppID, b.API+" "+b.AppID)
	}) {
		k.Codes = codes[k]
		st.ByApp = append(st.ByApp, k)
	}
	docs, err := layout.quotas(ctx, storage)
	if err != nil {
		st.Error = fmt.Sprintf("listing the counts: %v", err)
		return st
	}
	for _, q := range docs {
		raw, err := storage.Load(ctx, q.key)
		var doc caps.Doc
		if err != nil || json.Unmarshal(raw, &doc) != nil {
			continue
		}
		st.Generated = append(st.Generated, appCounted{
			AppID:     q.appID,
			Group:     q.group,
			Generated: doc.Generated,
			NumUsed:   doc.NumUsed,
		})
	}
	return st
}

// storageName names a storage by its own String, which storage modules
// write to leave their credentials out, or else by its type: never by its
// fields.
func storageName(storage certmagic.Storage) string {
	if named, ok := storage.(fmt.Stringer); ok {
		return named.String()
	}
	return fmt.Sprintf("%T", storage)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
