package network

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
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
