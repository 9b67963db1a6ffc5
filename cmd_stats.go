package wxqrcode

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"

	"github.com/wxqrcode/caddy-wxqrcode/internal/caps"
)

func statsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "stats [--address <admin address> | --config <file> [--adapter <name>]] | stats --dir <storage root>",
		Short: "Shows what the cache holds and the codes generated per app",
		Long: `
Prints, for each storage the wxqrcode handlers use, how many codes it
holds, by api and app, with their size, and for each app the codes the
module had WeChat generate and the last Num-Used WeChat reported.

By default it asks the running Caddy, through its admin API, which reads
the storage of every wxqrcode handler it runs, each storage once. The admin
endpoint is found as caddy stop finds it: --address, or the admin listener
of the config given by --config, or localhost:2019.

With --dir, it reads the file_system storage rooted there itself, for a
Caddy that is not running.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			out := cmd.OutOrStdout()
			if flags.Changed("dir") {
				if err := refuseFlags(cmd, "--dir reads a storage here, with no Caddy running", "address", "config", "adapter"); err != nil {
					return err
				}
				dir, _ := flags.GetString("dir")
				st := readStats(cmd.Context(), &certmagic.FileStorage{Path: dir})
				st.print(out)
				if st.Error != "" {
					return errors.New(st.Error)
				}
				return nil
			}
			addr, err := adminAddress(cmd)
			if err != nil {
				return err
			}
			var res statsResponse
			if err := adminCall(addr, http.MethodGet, "/wxqrcode/stats", nil, &res); err != nil {
				return fmt.Errorf("%v; for a Caddy that is not running, --dir reads its file_system storage", err)
			}
			if len(res.Storages) == 0 {
				fmt.Fprintln(out, "the running Caddy has no wxqrcode handler")
				return nil
			}
			failed := 0
			for i, st := range res.Storages {
				if i > 0 {
					fmt.Fprintln(out)
				}
				st.print(out)
				if st.Error != "" {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d storages could not be read", failed, len(res.Storages))
			}
			return nil
		},
	}
	addAdminFlags(c)
	c.Flags().String("dir", "", "the root of a file_system storage to read, for a Caddy that is not running")
	return c
}

// print writes st as caddy wxqrcode stats shows it.
func (st storageStats) print(out io.Writer) {
	fmt.Fprintf(out, "storage: %s\n", st.Storage)
	if st.Error != "" {
		fmt.Fprintf(out, "  error: %s\n", st.Error)
		if st.Codes == 0 {
			return
		}
	}
	fmt.Fprintf(out, "codes cached: %d (%.1f MiB)", st.Codes, float64(st.Bytes)/(1<<20))
	if st.NotWhole > 0 {
		fmt.Fprintf(out, ", %d not whole (fetched again when asked for)", st.NotWhole)
	}
	fmt.Fprintln(out)
	for _, a := range st.ByApp {
		fmt.Fprintf(out, "  %-12s %-20s %d\n", a.API, a.AppID, a.Codes)
	}
	if len(st.Generated) > 0 {
		fmt.Fprintln(out, "codes generated through the module:")
	}
	for _, g := range st.Generated {
		fmt.Fprintf(out, "  %-20s %-12s %d", g.AppID, g.Group, g.Generated)
		if g.Group == caps.GroupLimited || g.Group == caps.GroupOAPermanent || g.Group == caps.GroupPermanentShortLink {
			fmt.Fprintf(out, " of %d", caps.LifetimeBudget)
			if g.NumUsed > 0 {
				fmt.Fprintf(out, " (WeChat's Num-Used: %d)", g.NumUsed)
			}
		}
		fmt.Fprintln(out)
	}
}
