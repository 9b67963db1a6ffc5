package wxqrcode

import (
	"context"
	"encoding/hex"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/certmagic"
)

// storageLayout names everything the module keeps in a storage, in one
// place, as certmagic's KeyBuilder does for certificates. Locks live
// under a prefix of their own, so that listing the codes, the ledgers or
// the counts finds only those, on any storage module.
//
//	wxqrcode/codes/<2 hex>/<key>                 a code (see cacheKey)
//	wxqrcode/tokens/<appid>/<mode>.json          an app's shared token
//	wxqrcode/stored/<appid>/<api>/head, seg/<n>  the ledger of stored codes
//	wxqrcode/quota/<appid>/<group>.json          the counts of new codes
//	wxqrcode/locks/{codes,tokens,stored,quota}/  the locks of each of those
type storageLayout struct{}

// layout is the one storage layout of the module.
var layout storageLayout

const (
	codesPrefix = "wxqrcode/codes"
	quotaPrefix = "wxqrcode/quota"
	locksPrefix = "wxqrcode/locks"
)

// code is where the code of key (a hex SHA-256) is stored.
func (storageLayout) code(key string) string {
	return codesPrefix + "/" + key[:2] + "/" + key
}

// codeLock is the lock the fetch of key's code holds.
func (storageLayout) codeLock(key string) string {
	return locksPrefix + "/codes/" + key
}

// codes lists the storage keys of the codes in storage; whatever else a
// storage module keeps under the codes' prefix is not listed.
func (l storageLayout) codes(ctx context.Context, storage certmagic.Storage) ([]string, error) {
	keys, err := storage.List(ctx, codesPrefix, true)
	if err != nil && !isNotExist(err) {
		return nil, err
	}
	codes := keys[:0]
	for _, key := range keys {
		if l.isCode(key) {
			codes = append(codes, key)
		}
	}
	return codes, nil
}

// isCode reports whether name is where l.code puts a code.
func (l storageLayout) isCode(name string) bool {
	key := path.Base(name)
	if len(key) != 64 || strings.ToLower(key) != key {
		return false
	}
	if _, err := hex.DecodeString(key); err != nil {
		return false
	}
	return name == l.code(key)
}

// token is where an app's token of a token mode (stable, classic) is
// shared.
func (storageLayout) token(appID, mode string) string {
	return "wxqrcode/tokens/" + appID + "/" + mode + ".json"
}

// tokenLock is the lock of an app's shared token.
func (storageLayout) tokenLock(appID, mode string) string {
	return locksPrefix + "/tokens/" + appID + "/" + mode
}

// ledger names the ledger of the codes stored for an app and api, in logs.
func (storageLayout) ledger(appID, api string) string {
	return "wxqrcode/stored/" + appID + "/" + api
}

// ledgerHead is the head document of a ledger.
func (l storageLayout) ledgerHead(appID, api string) string {
	return l.ledger(appID, api) + "/head"
}

// ledgerSegment is segment n of a ledger.
func (l storageLayout) ledgerSegment(appID, api string, n int) string {
	return l.ledger(appID, api) + "/seg/" + strconv.Itoa(n)
}

// ledgerLock is the lock a ledger is read and written under.
func (storageLayout) ledgerLock(appID, api string) string {
	return locksPrefix + "/stored/" + appID + "/" + api
}

// quota is the document of an app's counts of new codes in a group
// (limited, unlimited, oa_permanent).
func (storageLayout) quota(appID, group string) string {
	return quotaPrefix + "/" + appID + "/" + group + ".json"
}

// quotaLock is the lock a quota document is written under.
func (storageLayout) quotaLock(appID, group string) string {
	return locksPrefix + "/quota/" + appID + "/" + group
}

// quotaKey is a quota document found in a storage, with its app and group.
type quotaKey struct {
	key, appID, group string
}

// quotas lists the quota documents in storage, in order.
func (l storageLayout) quotas(ctx context.Context, storage certmagic.Storage) ([]quotaKey, error) {
	keys, err := storage.List(ctx, quotaPrefix, true)
	if err != nil && !isNotExist(err) {
		return nil, err
	}
	var docs []quotaKey
	for _, key := range keys {
		appID := path.Base(path.Dir(key))
		group, ok := strings.CutSuffix(path.Base(key), ".json")
		if ok && key == l.quota(appID, group) {
			docs = append(docs, quotaKey{key: key, appID: appID, group: group})
		}
	}
	slices.SortFunc(docs, func(a, b quotaKey) int { return strings.Compare(a.key, b.key) })
	return docs, nil
}
