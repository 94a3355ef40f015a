package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/storage/bolt"
)

func newStoreCommand() *cobra.Command {
	dataDir := app.DefaultDataDir()
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check, back up, restore or salvage the bolt store (the server must be stopped)",
		Long: `Work on the bolt store file <data-dir>/headway.db while the server is stopped.
Writes reach <data-dir>/headway.db.wal, the write-ahead log, first; the server
commits them into the file as it runs, when it stops, and when it starts after
a crash.

The server copies the store into <data-dir>/backups every --backup-interval
(10m by default, the newest --backup-keep kept). When the store is damaged
(the server refuses to start and names the file):

  headway store check      what is readable, what is damaged
  headway store restore    put the newest backup (or --from FILE) in place
  headway store salvage    copy every readable object into a new file

Both restore and salvage keep the replaced file beside it (headway.db.replaced-<time>),
and its write-ahead log (headway.db.replaced-<time>.wal).`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", dataDir, "the server's data directory")
	path := func() string { return app.StorePath(dataDir) }

	check := &cobra.Command{
		Use:   "check",
		Short: "Read every page and object of the store and report what is damaged",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := bolt.Check(path(), decodeObject())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: revision %d, %d objects readable, %d change-log records\n", rep.Path, rep.Revision, rep.Keys, rep.Log)
			if rep.Logged > 0 {
				fmt.Fprintf(out, "%s.wal: %d writes after revision %d, which the server commits into the file when it starts\n", rep.Path, rep.Logged, rep.Revision)
			}
			if rep.OK() {
				fmt.Fprintln(out, "ok: no damage found")
				return nil
			}
			for _, p := range rep.Problems {
				fmt.Fprintln(out, "damaged:", p)
			}
			return fmt.Errorf("%s has %d problems: run `headway store restore --data-dir %s` to use the newest backup, or `headway store salvage --data-dir %s` to keep every readable object", rep.Path, len(rep.Problems), dataDir, dataDir)
		},
	}

	var to string
	backup := &cobra.Command{
		Use:   "backup",
		Short: "Copy the store to a file (the running server makes its own backups)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				to = filepath.Join(app.BackupDir(dataDir), bolt.BackupName(time.Now()))
			}
			s, err := bolt.Open(path(), bolt.Options{Timeout: 200 * time.Millisecond})
			if err != nil {
				return fmt.Errorf("%w (a running server keeps backups itself in %s)", err, app.BackupDir(dataDir))
			}
			defer s.Close()
			if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
				return err
			}
			if err := s.Backup(to); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup of %s (revision %d) written to %s\n", path(), s.Revision(), to)
			return nil
		},
	}
	backup.Flags().StringVar(&to, "to", "", "file to write (default: <data-dir>/backups/headway-<time>.db)")

	var from string
	restore := &cobra.Command{
		Use:   "restore",
		Short: "Replace the store with a backup (the newest in <data-dir>/backups unless --from)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				files, err := bolt.Backups(app.BackupDir(dataDir))
				if err != nil {
					return err
				}
				if len(files) == 0 {
					return fmt.Errorf("no backups in %s: pass --from FILE, or try `headway store salvage --data-dir %s`", app.BackupDir(dataDir), dataDir)
				}
				from = files[len(files)-1]
			}
			kept, err := bolt.Restore(path(), from)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s from %s", path(), from)
			if kept != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "; the replaced file is %s", kept)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nobjects written after the backup are gone; start the server again")
			return nil
		},
	}
	restore.Flags().StringVar(&from, "from", "", "backup file to restore")

	salvage := &cobra.Command{
		Use:   "salvage",
		Short: "Copy every readable object into a new store file and put it in place",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			saved, kept, problems, err := bolt.Salvage(path())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range problems {
				fmt.Fprintln(out, "lost:", p)
			}
			fmt.Fprintf(out, "salvaged %d objects into %s; the damaged file is %s\nwatch history was dropped (clients relist); start the server again\n", saved, path(), kept)
			return nil
		},
	}
	cmd.AddCommand(check, backup, restore, salvage)
	return cmd
}

// decodeObject checks that a stored value is an object the server can
// read: a built-in kind, or JSON with apiVersion and kind (custom resources).
// Keys outside /registry/ are the server's own records (Service address
// reservations), not objects.
func decodeObject() func(key string, value []byte) error {
	dec := serializer.NewCodecFactory(builtin.Scheme()).UniversalDeserializer()
	return func(key string, value []byte) error {
		if !strings.HasPrefix(key, "/registry/") {
			return nil
		}
		_, _, err := dec.Decode(value, nil, nil)
		if err == nil {
			return nil
		}
		if runtime.IsNotRegisteredError(err) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if jerr := json.Unmarshal(value, &meta); jerr == nil && meta.APIVersion != "" && meta.Kind != "" {
				return nil
			}
		}
		return fmt.Errorf("undecodable object: %v", err)
	}
}
