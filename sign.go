package wxqrcode

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
)

// sigParam is the query parameter that carries a request's signature.
const sigParam = "sig"

// minSignKeyLen keeps keys long enough that guessing one is hopeless.
const minSignKeyLen = 16

// sign returns the signature of a canonical request: the lowercase hex
// HMAC-SHA256 of the canonical string under key.
func sign(key, canonical string) string {
	return hex.EncodeToString(mac(key, canonical))
}

func mac(key, canonical string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(canonical))
	return m.Sum(nil)
}

// signatureValid reports whether sig signs canonical under any of keys,
// comparing in constant time, so that keys can be rotated: sign with the
// new key while the old one is still accepted.
func signatureValid(keys []string, canonical, sig string) bool {
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	valid := false
	for _, k := range keys {
		valid = hmac.Equal(got, mac(k, canonical)) || valid
	}
	return valid
}

// signURL adds the signature of canonical to u's query.
func signURL(u *url.URL, key, canonical string) *url.URL {
	return withSig(u, sign(key, canonical))
}

// withSig is u with sig in its query, in place of any sig it had.
func withSig(u *url.URL, sig string) *url.URL {
	signed := *u
	q := signed.Query()
	q.Set(sigParam, sig)
	signed.RawQuery = q.Encode()
	return &signed
}
