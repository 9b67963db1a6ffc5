package wxqrcode

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "wxqrcode",
		Usage: "sign|prefetch|stats ...",
		Short: "Tools for the wxqrcode module",
		Long: `
Tools for the wxqrcode handler.

  sign       prints a code URL with its signature, for a route with sign_key
  prefetch   fills the cache with the codes of a list
  stats      shows what the cache holds and the codes generated per app
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(signCommand(), prefetchCommand(), statsCommand())
		},
	})
}

func signCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sign --appid <appid> [--api qrcode|wxacode|unlimited] [--key-env <var>] <url>",
		Short: "Prints a signed code URL",
		Long: `
Prints <url> with the sig parameter that a wxqrcode route with sign_key
accepts. The URL's query holds the request's parameters as the route reads
them with its default templates: path (or scene and page) and width.

The key is read from the environment variable named by --key-env
(default WXQRCODE_SIGN_KEY), so it stays out of the shell history.

Example:

  WXQRCODE_SIGN_KEY=... caddy wxqrcode sign --appid wx0123456789abcdef \
      'https://shop.example.com/qr?path=pages/item/item%3Fid%3D42'
`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			appID, _ := cmd.Flags().GetString("appid")
			api, _ := cmd.Flags().GetString("api")
			keyEnv, _ := cmd.Flags().GetString("key-env")
			signed, err := signedURL(appID, api, os.Getenv(keyEnv), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), signed)
			return nil
		},
	}
	c.Flags().String("appid", "", "the app's appid, as in the wxqrcode block (required)")
	c.Flags().String("api", apiQRCode, "the api of the wxqrcode block")
	c.Flags().String("key-env", "WXQRCODE_SIGN_KEY", "the environment variable holding the key to sign with")
	return c
}

// signedURL checks the request in rawURL as a handler with default
// templates would, and returns rawURL with its signature.
func signedURL(appID, api, key, rawURL string) (string, error) {
	if len(key) < minSignKeyLen {
		return "", fmt.Errorf("the signing key must be at least %d characters", minSignKeyLen)
	}
	if !validAppID(appID) {
		return "", fmt.Errorf("--appid is required, like wx0123456789abcdef")
	}
	api = cmp.Or(api, apiQRCode)
	if err := checkValue("api", api); err != nil {
		return "", err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("bad URL: %v", err)
	}
	h := &Handler{API: api, appID: appID, SignKey: []string{key}}
	h.setTemplateDefaults()
	query, err := checkQuery(u.RawQuery, h.queryNames)
	if err != nil {
		return "", err
	}
	repl := caddy.NewReplacer()
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "http.request.uri.query.")
		return query.Get(name), ok
	})
	cr, err := h.resolveRequest(repl)
	if err != nil {
		return "", err
	}
	return signURL(u, key, cr.canonical).String(), nil
}
