package wxqrcode

import "testing"

// A key given to sign or prefetch is used as it is: the route resolved its
// own placeholders once, at load, and braces in the key are its own.
func TestOfflineHandlerKeyAsGiven(t *testing.T) {
	for _, key := range []string{"abcdefghijklmnop{qrstuvwxyz}", `abcdefghijklmnop\{qrstuvwxyz`, "{env.HOME}abcdefghijklmnop"} {
		h, err := offlineHandler("wx0123456789abcdef", apiQRCode, key)
		if err != nil {
			t.Fatal(err)
		}
		if h.signKeys[0] != key {
			t.Errorf("key %q signs as %q", key, h.signKeys[0])
		}
	}
}
