package wxqrcode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "wxqrcode",
		Usage: "sign|prefetch|stats|purge ...",
		Short: "Tools for the wxqrcode module",
		Long: `
Tools for the wxqrcode handler.

  sign       prints code URLs with their signatures, for routes with sign_key
  prefetch   fills the cache with the codes of a list
  stats      shows what the cache holds and the codes generated per app
  purge      removes codes from the cache

sign, stats and purge ask the running Caddy through its admin API, so that they
see the config as it runs.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(signCommand(), prefetchCommand(), statsCommand(), purgeCommand())
		},
	})
}

// addAdminFlags adds the flags that find the running Caddy's admin
// endpoint, as caddy stop and caddy reload have them.
func addAdminFlags(c *cobra.Command) {
	c.Flags().String("address", "", "the admin API's address (default: the admin listener of --config, else localhost:2019)")
	c.Flags().String("config", "", "a config file whose admin listener to ask")
	c.Flags().String("adapter", "", "the adapter of --config")
}

// adminAddress finds the admin endpoint of the running Caddy as caddy stop
// does: --address, else the admin listener of --config, else the default.
func adminAddress(cmd *cobra.Command) (string, error) {
	flags := cmd.Flags()
	address, _ := flags.GetString("address")
	config, _ := flags.GetString("config")
	adapter, _ := flags.GetString("adapter")
	if address != "" && config != "" {
		return "", fmt.Errorf("--address and --config both name the admin endpoint: give one")
	}
	if adapter != "" && config == "" {
		return "", fmt.Errorf("--adapter applies to --config only")
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
	if err != nil {
		return "", fmt.Errorf("finding the admin endpoint: %v", err)
	}
	return addr, nil
}

// adminCall sends body, as JSON unless nil, to the admin API at addr and
// decodes the answer into out.
func adminCall(addr, method, uri string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		return fmt.Errorf("asking the running Caddy's admin API at %s (--address names another): %v", addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading the answer of the admin API at %s: %v", addr, err)
	}
	return nil
}

// refuseFlags refuses any of the named flags that cmd was given, saying
// why they do not apply, rather than ignore them.
func refuseFlags(cmd *cobra.Command, why string, names ...string) error {
	for _, name := range names {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s does not apply: %s", name, why)
		}
	}
	return nil
}
