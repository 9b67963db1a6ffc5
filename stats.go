package wxqrcode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"
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

// storageStats is what one storage holds.
type storageStats struct {
	// Storage names the storage by its String or its type, never by its
	// fields (see storageName).
	Storage string `json:"storage"`
	Codes   int    `json:"codes"`
	Bytes   int64  `json:"bytes"`
	// NotWhole counts entries that do not decode; they are fetched again
	// when asked for.
	NotWhole  int          `json:"not_whole,omitempty"`
	ByApp     []appCodes   `json:"by_app,omitempty"`
	Generated []appCounted `json:"generated,omitempty"`
	// Error says why the storage could not be read, or read whole.
	Error string `json:"error,omitempty"`
}

// appCodes counts the cached codes of one api and app.
type appCodes struct {
	API   string `json:"api"`
	AppID string `json:"appid"`
	Codes int    `json:"codes"`
}

// appCounted is an app's count of the codes generated through the module,
// in one group (limited or unlimited).
type appCounted struct {
	AppID     string `json:"appid"`
	Group     string `json:"group"`
	Generated int    `json:"generated"`
	NumUsed   int    `json:"num_used,omitempty"`
}

// readStats reads the codes and counts in storage.
func readStats(ctx context.Context, storage certmagic.Storage) storageStats {
	st := storageStats{Storage: storageName(storage)}
	keys, err := layout.codes(ctx, storage)
	if err != nil {
		st.Error = fmt.Sprintf("listing the codes: %v", err)
		return st
	}
	codes := map[appCodes]int{} // by api and app
	for _, key := range keys {
		raw, err := storage.Load(ctx, key)
		if err != nil {
			continue // gone since the listing
		}
		st.Codes++
		st.Bytes += int64(len(raw))
		head, _, _ := bytes.Cut(raw, []byte("\n"))
		var meta entryMeta
		if _, err := decodeEntry(raw); err != nil || json.Unmarshal(head, &meta) != nil {
			st.NotWhole++
			continue
		}
		req, _ := url.ParseQuery(meta.Request)
		codes[appCodes{API: req.Get("api"), AppID: req.Get("appid")}]++
	}
	for _, k := range slices.SortedFunc(maps.Keys(codes), func(a, b appCodes) int {
		return strings.Compare(a.API+" "+a.AppID, b.API+" "+b.AppID)
	}) {
		k.Codes = codes[k]
		st.ByApp = append(st.ByApp, k)
	}
	docs, err := layout.quotas(ctx, storage)
	if err != nil {
		st.Error = fmt.Sprintf("listing the counts: %v", err)
		return st
	}
	for _, q := range docs {
		raw, err := storage.Load(ctx, q.key)
		var doc quotaDoc
		if err != nil || json.Unmarshal(raw, &doc) != nil {
			continue
		}
		st.Generated = append(st.Generated, appCounted{
			AppID:     q.appID,
			Group:     q.group,
			Generated: doc.Generated,
			NumUsed:   doc.NumUsed,
		})
	}
	return st
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
		if g.Group == groupLimited || g.Group == groupOAPermanent {
			fmt.Fprintf(out, " of %d", lifetimeBudget)
			if g.NumUsed > 0 {
				fmt.Fprintf(out, " (WeChat's Num-Used: %d)", g.NumUsed)
			}
		}
		fmt.Fprintln(out)
	}
}

// storageName names a storage by its own String, which storage modules
// write to leave their credentials out, or else by its type: never by its
// fields.
func storageName(storage certmagic.Storage) string {
	if named, ok := storage.(fmt.Stringer); ok {
		return named.String()
	}
	return fmt.Sprintf("%T", storage)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
