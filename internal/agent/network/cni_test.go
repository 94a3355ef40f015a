package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCNIRelay drives the Go relay (the plugin where curl is missing)
// against the agent's socket, without root: the answers a container
// runtime reads, also when the agent is down.
func TestCNIRelay(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	conf := `{"cniVersion":"1.0.0","name":"headway","type":"headway-cni","socket":"` + sock + `"}`
	run := func(env map[string]string) (int, string) {
		var out bytes.Buffer
		code := cniRelay(strings.NewReader(conf), &out, func(k string) string { return env[k] })
		return code, out.String()
	}
	add := map[string]string{"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_NETNS": "/run/netns/x",
		"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"}

	if code, out := run(map[string]string{"CNI_COMMAND": "VERSION"}); code != 0 || !strings.Contains(out, `"1.0.0"`) {
		t.Errorf("VERSION: %d %s", code, out)
	}
	// The agent is down: a DEL succeeds (nothing of its is left), an ADD
	// fails with a CNI error naming the socket.
	if code, out := run(map[string]string{"CNI_COMMAND": "DEL"}); code != 0 {
		t.Errorf("DEL with the agent down: %d %s", code, out)
	}
	code, out := run(add)
	var cniErr struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if code == 0 || json.Unmarshal([]byte(out), &cniErr) != nil || !strings.Contains(cniErr.Msg, sock) {
		t.Errorf("ADD with the agent down: %d %s", code, out)
	}

	// The agent up; the pod is not one it runs: the agent's CNI error comes
	// through, with a failing exit.
	var seen []string
	n := &Network{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := n.ServeCNI(ctx, sock, func(ns, name, uid string) (string, bool) {
		seen = append(seen, ns+"/"+name)
		return "", false
	}); err != nil {
		t.Fatal(err)
	}
	code, out = run(add)
	if code == 0 || json.Unmarshal([]byte(out), &cniErr) != nil || !strings.Contains(cniErr.Msg, "default/web-0 is not one this node runs") {
		t.Errorf("ADD of an unknown pod: %d %s", code, out)
	}
	if len(seen) != 1 || seen[0] != "default/web-0" {
		t.Errorf("the agent was asked about %q, want default/web-0 (from CNI_ARGS)", seen)
	}
	if code, out := run(map[string]string{"CNI_COMMAND": "DEL", "CNI_ARGS": add["CNI_ARGS"]}); code != 0 {
		t.Errorf("DEL of an unknown pod: %d %s", code, out)
	}
}

// TestCNIBashRelay runs the bash relay (the plugin where the agent starts
// containerd itself) as containerd would, against the agent's loopback
// listener: the same answers as the socket's, a token that is checked, and
// the agent-down cases.
func TestCNIBashRelay(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var seen []string
	n := &Network{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, token, err := n.ServeCNILoopback(ctx, func(ns, name, uid string) (string, bool) {
		seen = append(seen, ns+"/"+name+"/"+uid)
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	if !addr.Addr().IsLoopback() || len(token) != 32 {
		t.Fatalf("listener %s, token %q: want loopback and 16 random bytes", addr, token)
	}
	dir := t.TempDir()
	write := func(name string, script []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, script, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	relay := write("headway-cni", CNIRelayBashScript(addr, token))
	conf := `{"cniVersion":"1.0.0","name":"headway","type":"headway-cni"}` + "\n"
	run := func(script string, env map[string]string) (int, string) {
		cmd := exec.Command(bash, script)
		cmd.Stdin = strings.NewReader(conf)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	add := map[string]string{"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_NETNS": "/run/netns/x", "CNI_CONTAINERID": "c1",
		"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u1"}
	var cniErr struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}

	if code, out := run(relay, map[string]string{"CNI_COMMAND": "VERSION"}); code != 0 || !strings.Contains(out, `"supportedVersions"`) || !strings.Contains(out, `"1.0.0"`) {
		t.Errorf("VERSION: %d %s", code, out)
	}
	// The agent's error comes through as the plugin's output, with a
	// failing exit; the pod named is the one in CNI_ARGS.
	code, out := run(relay, add)
	if code == 0 || json.Unmarshal([]byte(out), &cniErr) != nil || !strings.Contains(cniErr.Msg, "default/web-0 is not one this node runs") {
		t.Errorf("ADD of an unknown pod: %d %q", code, out)
	}
	if len(seen) != 1 || seen[0] != "default/web-0/u1" {
		t.Errorf("the agent was asked about %q, want default/web-0/u1 (from CNI_ARGS)", seen)
	}
	if code, out := run(relay, map[string]string{"CNI_COMMAND": "DEL", "CNI_ARGS": add["CNI_ARGS"]}); code != 0 {
		t.Errorf("DEL of an unknown pod: %d %s", code, out)
	}
	// Without the token nothing is done.
	wrong := write("wrong-token", CNIRelayBashScript(addr, strings.Repeat("0", 32)))
	seen = nil
	if code, out := run(wrong, add); code == 0 || len(seen) != 0 || !strings.Contains(out, "CNI-Token") {
		t.Errorf("ADD with a wrong token: exit %d, agent asked about %q, output %q", code, seen, out)
	}

	// The agent down: a DEL succeeds (nothing of its is left), an ADD fails
	// with a CNI error naming the listener.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener is still open after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, out := run(relay, map[string]string{"CNI_COMMAND": "DEL"}); code != 0 {
		t.Errorf("DEL with the agent down: %d %s", code, out)
	}
	code, out = run(relay, add)
	if code == 0 || json.Unmarshal([]byte(out), &cniErr) != nil || !strings.Contains(cniErr.Msg, addr.String()) {
		t.Errorf("ADD with the agent down: %d %q", code, out)
	}
}
