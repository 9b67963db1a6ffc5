package wxqrcode

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
		Use:   "sign (--config <file> [--adapter caddyfile] | --appid <appid> [--api qrcode|wxacode|unlimited] [--key-env <var>]) <url>",
		Short: "Prints a signed code URL",
		Long: `
Prints <url> with the sig parameter that a wxqrcode route with sign_key
accepts.

With --config, the route is the wxqrcode handler of the config that serves
<url>, found as Caddy would: the server listening on the URL's port, its
matchers, route groups, subroutes and rewrites. Its templates, appid and
first sign_key (placeholders such as {env.WXQRCODE_SIGN_KEY} read from this
environment) make the signature.

Without --config, the route is one with the default templates: the URL's
query holds path (or scene and page), and width, which is checked but not
signed. --appid and --api are the route's, and the key is read from the
environment variable named by --key-env (default WXQRCODE_SIGN_KEY), so it
stays out of the shell history.

Examples:

  caddy wxqrcode sign --config Caddyfile 'https://posters.example.com/poster/A1B2C3.png'
  WXQRCODE_SIGN_KEY=... caddy wxqrcode sign --appid wx0123456789abcdef \
      'https://shop.example.com/qr?path=pages/item/item%3Fid%3D42'
`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			r, err := preparedRequest(args[0])
			if err != nil {
				return err
			}
			u := *r.URL // a rewrite on the way to the handler changes r
			var h *Handler
			finder, err := finderFromFlags(cmd)
			if err != nil {
				return err
			}
			if finder != nil {
				defer finder.Close()
				if h, err = finder.find(r); err != nil {
					return err
				}
			} else {
				appID, _ := flags.GetString("appid")
				api, _ := flags.GetString("api")
				keyEnv, _ := flags.GetString("key-env")
				if h, err = defaultHandler(appID, api, os.Getenv(keyEnv)); err != nil {
					return err
				}
			}
			signed, err := h.signedURL(r, &u)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), signed)
			return nil
		},
	}
	c.Flags().String("config", "", "the Caddy config holding the route")
	c.Flags().String("adapter", "", "the config's adapter (default: caddyfile for files named Caddyfile*)")
	c.Flags().String("appid", "", "the app's appid, as in the wxqrcode block")
	c.Flags().String("api", apiQRCode, "the api of the wxqrcode block")
	c.Flags().String("key-env", "WXQRCODE_SIGN_KEY", "the environment variable holding the key to sign with")
	return c
}

// finderFromFlags reads the --config of cmd, which replaces the flags that
// describe a route; it returns nil without --config.
func finderFromFlags(cmd *cobra.Command) (*routeFinder, error) {
	flags := cmd.Flags()
	config, _ := flags.GetString("config")
	if config == "" {
		return nil, nil
	}
	for _, f := range []string{"appid", "api", "key-env"} {
		if flags.Changed(f) {
			return nil, fmt.Errorf("--%s comes from the config with --config", f)
		}
	}
	adapter, _ := flags.GetString("adapter")
	raw, err := loadConfig(config, adapter)
	if err != nil {
		return nil, err
	}
	return newRouteFinder(raw)
}

// defaultHandler is a handler with the default templates, signing with key.
func defaultHandler(appID, api, key string) (*Handler, error) {
	if len(key) < minSignKeyLen {
		return nil, fmt.Errorf("the signing key must be at least %d characters", minSignKeyLen)
	}
	if !validAppID(appID) {
		return nil, fmt.Errorf("--appid is required, like wx0123456789abcdef")
	}
	api = cmp.Or(api, apiQRCode)
	if err := checkValue("api", api); err != nil {
		return nil, err
	}
	h := &Handler{API: api, AppID: appID}
	h.resolveConfig()
	// The key as given: the route resolved its placeholders once, at load.
	h.signKeys = []string{key}
	return h, nil
}

// signedURL checks r, from preparedRequest and the route's matchers, as h
// would serve it, and returns u, the URL asked for, with r's signature
// under h's first key.
func (h *Handler) signedURL(r *http.Request, u *url.URL) (string, error) {
	if len(h.signKeys) == 0 || h.signKeys[0] == "" {
		return "", fmt.Errorf("the route has no sign_key, or its placeholder is empty here")
	}
	cr, _, err := h.codeRequestOf(r)
	if err != nil {
		return "", err
	}
	return signURL(u, h.signKeys[0], cr.canonical).String(), nil
}

// preparedRequest is a GET of rawURL as Caddy hands it to its routes; the
// matchers fill its replacer as they match.
func preparedRequest(rawURL string) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
		return nil, fmt.Errorf("want an http or https URL, not %q", rawURL)
	}
	r.RequestURI = r.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil), nil
}
