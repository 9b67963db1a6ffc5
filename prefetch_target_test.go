package wxqrcode

import (
	"net/url"
	"testing"
)

func TestPrefetchTarget(t *testing.T) {
	tests := []struct {
		route, param, query, value, want string
	}{
		{"http://h/qr", "path", "", "pages/a/a?id=1", "http://h/qr?path=pages%2Fa%2Fa%3Fid%3D1&width=1280"},
		{"http://h/qr?width=280", "path", "", "a", "http://h/qr?path=a&width=280"},
		{"http://h/p", "scene", "page=pages/a/a", "id=1", "http://h/p?page=pages%2Fa%2Fa&scene=id%3D1&width=1280"},
		{"http://h/poster/{}", "path", "", "id=1&x=2", "http://h/poster/id=1&x=2?width=1280"},
		{"http://h/poster/{}", "path", "", "a b?c#d%", "http://h/poster/a%20b%3Fc%23d%25?width=1280"},
		{"http://h/poster/{}?w=280", "path", "", "k", "http://h/poster/k?w=280&width=1280"},
		{"http://h/qr?path={}&width=280", "path", "", "p?id=1&b", "http://h/qr?path=p%3Fid%3D1%26b&width=280"},
	}
	for _, tt := range tests {
		fixed, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		p := &prefetcher{route: tt.route, param: tt.param}
		got, err := p.target(fixed, tt.value)
		if err != nil || got != tt.want {
			t.Errorf("%s with %q: %q (%v), want %q", tt.route, tt.value, got, err, tt.want)
		}
	}
}
