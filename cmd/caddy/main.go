// Command caddy is Caddy with its standard modules and wxqrcode.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/wxqrcode/caddy-wxqrcode"
)

func main() {
	caddycmd.Main()
}
