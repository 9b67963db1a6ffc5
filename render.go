package wxqrcode

import (
	"crypto/sha256"

	"github.com/wxqrcode/caddy-wxqrcode/internal/imaging"
	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// masterWidth is the width WeChat is asked to draw every code at: its
// largest, so that every width served is the master itself or a
// downscale of it, which keeps module edges sharp.
const masterWidth = wechat.MaxWidth

// render draws master at width pixels wide, and high in proportion (codes
// are square), in the master's format: a JPEG stays a JPEG, a PNG stays a
// PNG with its alpha. The variant keeps the master's time, so its
// Last-Modified is the master's; its ETag is its own. The caller holds a
// draw slot (drawgate.go).
func render(master *entry, width int, style drawStyle) (*entry, error) {
	if master.content != "" {
		// An official account's code, drawn by this module: draw it again,
		// in the route's style.
		return redraw(master, width, style)
	}
	data, err := imaging.Resize(master.data, master.contentType, width)
	if err != nil {
		return nil, err
	}
	return newEntry(data, master.contentType, sha256.Sum256(data), master.stored), nil
}
