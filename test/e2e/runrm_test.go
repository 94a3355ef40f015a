package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRunRmTwentyTimes is issue 19: the documents' interactive step,
// `kubectl run -it --rm --image=busybox:1.28 test-pod -- sh` then `exit`,
// left its pod behind about half the time, because kubectl's DELETE raced
// the agent writing the restarted container's status and was answered 409
// Conflict (an error kubectl's deferred --rm drops). Twenty sessions in a
// row on a pseudo-terminal, with the bolt store and the process runtime:
// every pod is created, answers in its shell, and is deleted.
//
// kubectl run --rm does not wait for the pod to go (it deletes with the
// default grace period and without --wait), and the restarted interactive
// sh ignores SIGTERM, so each pod takes its 30s grace period to go, as under
// the kubelet. Each session checks that its DELETE was accepted (the pod is
// terminating or gone); the pods then go together, and the test waits for
// all twenty to be gone.
func TestRunRmTwentyTimes(t *testing.T) {
	needRoot(t)
	s := startNetnsServer(t, "--store", "bolt", "--runtime", "process")
	const sessions = 20
	kubeconfig := filepath.Join(s.dataDir, "kubeconfig")
	uids := map[string]bool{}
	var names []string
	start := time.Now()
	for i := range sessions {
		name := fmt.Sprintf("test-pod-%d", i)
		began := time.Now()
		term := startTerminal(t, "ip", "netns", "exec", s.ns, headwayBin, "kubectl", "--kubeconfig", kubeconfig,
			"run", "-it", "--rm", "--image=busybox:1.28", name, "--", "sh")
		term.expectPrompt(60 * time.Second)
		// The pod exists while its shell runs; its UID tells the sessions apart.
		uid := strings.TrimSpace(s.mustKubectl(t, "get", "pod", name, "-o", "jsonpath={.metadata.uid}"))
		if uid == "" || uids[uid] {
			t.Fatalf("session %d: pod %s has UID %q (seen before: %t)", i, name, uid, uids[uid])
		}
		uids[uid] = true
		names = append(names, name)
		term.typeLine(fmt.Sprintf(`echo "answer $((%d + 1000))"`, i))
		term.expect(regexp.MustCompile(fmt.Sprintf(`answer %d`, i+1000)), 20*time.Second)
		term.typeLine("exit")
		select {
		case <-term.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("session %d: kubectl run did not end after exit:\n%s", i, term.screen())
		}
		if !strings.Contains(term.screen(), fmt.Sprintf(`pod "%s" deleted`, name)) {
			t.Errorf("session %d: kubectl run --rm did not report deleting the pod:\n%s", i, term.screen())
		}
		// The API agrees that the DELETE was accepted.
		state := ""
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); waitABit() {
			out, err := s.kubectl("", "get", "pod", name, "-o", "jsonpath=deleting={.metadata.deletionTimestamp}")
			switch {
			case err != nil && strings.Contains(out, "NotFound"):
				state = "gone"
			case err == nil && out != "deleting=":
				state = "terminating"
			default:
				continue
			}
			break
		}
		if state == "" {
			out, _ := s.kubectl("", "get", "pod", name, "-o", "wide")
			t.Errorf("session %d: pod %s was not deleted (no deletionTimestamp 20s after kubectl run --rm ended):\n%s\n%s", i, name, out, term.screen())
			continue
		}
		t.Logf("session %d: created, answered and %s in %v", i, state, time.Since(began).Round(time.Millisecond))
	}
	// Every pod goes once its grace period is over.
	remaining := map[string]bool{}
	for _, n := range names {
		remaining[n] = true
	}
	var out string
	for deadline := time.Now().Add(120 * time.Second); len(remaining) > 0 && time.Now().Before(deadline); waitABit() {
		out, _ = s.kubectl("", "get", "pods", "-o", "name")
		for n := range remaining {
			if !strings.Contains(out+"\n", "pod/"+n+"\n") {
				delete(remaining, n)
			}
		}
	}
	created, deleted := len(uids), len(names)-len(remaining)
	t.Logf("%d sessions in %v: %d pods created, %d deleted", sessions, time.Since(start).Round(time.Millisecond), created, deleted)
	if created != sessions || deleted != sessions {
		t.Fatalf("%d pods created and %d deleted, want %d and %d; left:\n%s", created, deleted, sessions, sessions, out)
	}
}
