// Command headway runs Kubernetes headless Services and StatefulSets from one
// binary: `headway server`, `headway kubectl ...`, `headway version`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/busybox"
	"github.com/headway/headway/internal/gcpace"
	// Before kubectl's packages: only `headway kubectl` loads its translations.
	"github.com/headway/headway/internal/kubectltranslations"
	// Initialised first of ours, before the heavy packages: maps the
	// executable's cached pages and the heap's first MiBs in a few calls
	// instead of thousands of page faults.
	"github.com/headway/headway/internal/prefault"
	"github.com/headway/headway/internal/procs"
	"github.com/headway/headway/internal/version"
	// kubectl and client-go report the Kubernetes version without -ldflags.
	_ "github.com/headway/headway/internal/version/kubeversion"
)

func main() {
	// Multi-call: the process runtime links busybox applets it provides
	// for busybox images (nslookup as busybox 1.28 prints it) to this binary.
	switch filepath.Base(os.Args[0]) {
	case network.CNIPluginName:
		// The container runtime runs this binary as the pods' CNI plugin.
		network.CNIPluginMain()
		return
	case "nslookup":
		os.Exit(busybox.Nslookup(os.Args[1:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 2 && os.Args[1] == "busybox" && os.Args[2] == "nslookup" {
		os.Exit(busybox.Nslookup(os.Args[3:], os.Stdout, os.Stderr))
	}
	if kubectltranslations.RunsKubectl(os.Args) {
		os.Exit(runKubectl(os.Args[2:]))
	}
	if err := newRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "headway",
		Short:         "Kubernetes headless Services and StatefulSets from one binary",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(newServerCommand(), newAgentCommand(), newTokenCommand(), newDNSCommand(), newStoreCommand(), newKubectlCommand(), newVersionCommand())
	return root
}

func newServerCommand() *cobra.Command {
	opts := app.DefaultOptions()
	var pprofListen, startProfile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the API server, controllers, cluster DNS and node agent",
		Long: `Run a Kubernetes-compatible API server on an embedded store, with the
controllers, cluster DNS and a node agent. On start it writes an admin
kubeconfig to <data-dir>/kubeconfig; use it with 'headway kubectl' or any kubectl.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts.Logger = app.NewLogger(opts.LogLevel)
			app.RouteKlog(opts.Logger)
			if pprofListen != "" {
				if err := servePprof(ctx, pprofListen, opts.Logger); err != nil {
					return fmt.Errorf("--debug-pprof-listen: %w", err)
				}
			}
			if opts.Store == "bolt" {
				// The store's writer blocks in fdatasync twice a commit:
				// a spare P lets it run again at once (internal/procs).
				n, users := procs.SpareForSyncs()
				opts.Logger.Debug("GOMAXPROCS for the store's syncs", "GOMAXPROCS", n, "fromEnvironment", users)
			}
			stopProfile, err := profileStart(startProfile)
			if err != nil {
				return fmt.Errorf("--debug-start-cpuprofile: %w", err)
			}
			r, err := app.Start(ctx, opts)
			stopProfile()
			// Started: collections go by the live heap again, except
			// under bursts of writes and pod starts, when the heap may
			// grow to 128 MiB before a collection (internal/gcpace).
			prefault.Release()
			if err != nil {
				return err
			}
			defer gcpace.Start(ctx, gcpace.Options{Logger: opts.Logger})()
			settleCtx, stopSettle := context.WithCancel(ctx)
			defer stopSettle()
			go func() {
				releaseWhenQuiet(settleCtx, idleSettle, func() {
					released := releaseStartupMemory()
					opts.Logger.Debug("released the start's memory", "executableMappings", released)
				})
			}()
			return r.Wait()
		},
	}
	opts.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&pprofListen, "debug-pprof-listen", "", "serve Go runtime profiles (/debug/pprof/) over plain HTTP on this address, e.g. 127.0.0.1:6060 (default: none)")
	_ = cmd.Flags().MarkHidden("debug-pprof-listen")
	cmd.Flags().StringVar(&startProfile, "debug-start-cpuprofile", "", "write a CPU profile of the start (from the command line parsed to ready) to this file (default: none)")
	_ = cmd.Flags().MarkHidden("debug-start-cpuprofile")
	return cmd
}

func newAgentCommand() *cobra.Command {
	opts := app.DefaultAgentCommandOptions()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node of a cluster whose API server runs on another machine",
		Long: `Join the cluster at --server with a join token ('headway token create' on
the server) and run this machine's node: the node agent, the Service proxy
and the cluster DNS. The server must run with --allocate-node-cidrs: each
node gets a /24 of the cluster's pod range, and every agent routes the other
nodes' ranges through their addresses (--node-ip).

The agent sends its token only to a server whose certificate the cluster
CA signed (--ca-file, a copy of the server's <data-dir>/pki/ca.crt). The
credentials it gets are kept in <data-dir>/node-credentials.json: a
restart needs neither the token nor the CA file again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts.Logger = app.NewLogger(opts.LogLevel)
			app.RouteKlog(opts.Logger)
			// Pods starting are bursts of allocation, as writes are.
			defer gcpace.Start(ctx, gcpace.Options{Logger: opts.Logger})()
			return app.RunAgent(ctx, opts)
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}

func newTokenCommand() *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage join tokens for nodes on other machines ('headway agent')"}
	var kubeconfig, description string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token and print it",
		Long: `Create a bootstrap token (a Secret kube-system/bootstrap-token-<id> of type
bootstrap.kubernetes.io/token) and print it; 'headway agent --token' joins
a node with it. Delete the Secret to revoke the token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kubeconfig == "" {
				kubeconfig = os.Getenv("KUBECONFIG")
			}
			if kubeconfig == "" {
				kubeconfig = filepath.Join(app.DefaultDataDir(), "kubeconfig")
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("loading the admin kubeconfig %s (start the server, or pass --kubeconfig): %w", kubeconfig, err)
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			t, err := app.CreateBootstrapToken(cmd.Context(), client, ttl, description)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t)
			fmt.Fprintf(cmd.ErrOrStderr(), "join a machine with: headway agent --server %s --token %s --ca-file <a copy of the server's pki/ca.crt>\n", cfg.Host, t)
			return nil
		},
	}
	create.Flags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default: $KUBECONFIG, else <data-dir>/kubeconfig)")
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token joins nodes (0: until its Secret is deleted)")
	create.Flags().StringVar(&description, "description", "joins nodes (headway agent)", "the token's description")
	token.AddCommand(create)
	return token
}

func newDNSCommand() *cobra.Command {
	opts := app.DefaultDNSOptions()
	var kubeconfig, metricsListen, logLevel string
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Run the cluster DNS server alone, against any Kubernetes API server",
		Long: `Serve the Kubernetes DNS-Based Service Discovery records (Services,
EndpointSlices, Namespaces and Pods of the API server in --kubeconfig) on
--dns-listen, UDP and TCP. Works against a real cluster as well as Headway.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := app.NewLogger(logLevel)
			// The start touched most of the executable (every package's
			// init, the server's and kubectl's too): hand those pages
			// back before the first lists, and once more when synced,
			// with the lists' garbage; what serving runs comes back
			// from the file as it is used.
			releaseStartupMemory()
			return app.RunDNS(ctx, opts, kubeconfig, metricsListen, log, func() {
				released := releaseStartupMemory()
				log.Debug("released the start's memory", "executableMappings", released)
			})
		},
	}
	opts.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the API server to follow (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address to serve Prometheus /metrics on, e.g. 127.0.0.1:9153 (default: none)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug-4 adds the Kubernetes libraries' request and response bodies)")
	return cmd
}

// newKubectlCommand only documents `headway kubectl`; main runs it directly
// so that kubectl parses its own flags.
func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl [args...]",
		Short:              "Run the built-in kubectl against the local server (<data-dir>/kubeconfig)",
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			os.Exit(runKubectl(args))
		},
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Headway's version and the Kubernetes version it serves",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "headway %s (commit %s, built %s)\nkubernetes %s\n",
				version.Version, version.Commit, version.BuildDate, version.Kubernetes)
		},
	}
}

// runKubectl runs the embedded kubectl. Unless --kubeconfig or KUBECONFIG
// says otherwise, it uses <data-dir>/kubeconfig.
func runKubectl(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		path := filepath.Join(app.DefaultDataDir(), "kubeconfig")
		if _, err := os.Stat(path); err != nil {
			fmt.Fprintf(os.Stderr, "headway: no kubeconfig at %s yet; start the server with 'headway server' (or pass --kubeconfig)\n", path)
		}
		os.Setenv("KUBECONFIG", path)
	}
	os.Args = append([]string{"kubectl"}, args...)
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		cmdutil.CheckErr(err)
	}
	return 0
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}
