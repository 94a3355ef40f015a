// Package kubectl runs the kubectl Headway embeds (k8s.io/kubectl) in the
// test's process, as `headway kubectl` runs it, and returns what it printed.
package kubectl

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// mu serialises runs: kubectl's fatal-error handler is process-wide.
var mu sync.Mutex

// fatal carries kubectl's fatal error out of its handler.
type fatal struct {
	msg  string
	code int
}

// Run runs `kubectl --kubeconfig <kubeconfig> args...` and returns its
// standard output and error; err is set when kubectl would exit non-zero
// (its message is in stderr and err).
func Run(t testing.TB, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	full := append([]string{"--kubeconfig", kubeconfig}, args...)
	cmd := kubectlcmd.NewKubectlCommand(kubectlcmd.KubectlOptions{
		Arguments:   append([]string{"kubectl"}, full...),
		ConfigFlags: genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50.0),
		IOStreams:   streams,
	})
	cmd.SetArgs(full)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmdutil.BehaviorOnFatal(func(msg string, code int) { panic(fatal{msg, code}) })
	defer cmdutil.DefaultBehaviorOnFatal()
	func() {
		defer func() {
			if v := recover(); v != nil {
				f, ok := v.(fatal)
				if !ok {
					panic(v)
				}
				errOut.WriteString(f.msg)
				err = errors.New(strings.TrimSpace(f.msg))
			}
		}()
		if e := cmd.Execute(); e != nil {
			cmdutil.CheckErr(e)
		}
	}()
	return out.String(), errOut.String(), err
}
