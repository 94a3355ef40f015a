// Package kubectltranslations loads kubectl's message translations only in
// the invocations that run kubectl.
//
// kubectl's packages translate some of their help texts in package
// variables, so the first of them to initialise loads the translations
// (about 35 ms and 4 MiB of allocations: the embedded catalogue is zipped
// and parsed) in every process this binary starts: the server, and each
// CNI plugin run. This package initialises before them (it imports only
// kubectl's i18n package, and packages of equal readiness initialise in
// import-path order, github.com before k8s.io) and, unless this process
// runs kubectl, replaces the loading with nothing: i18n.T then returns the
// English text, which is what those processes never print anyway.
// `headway kubectl` loads them as kubectl does.
package kubectltranslations

import (
	"os"

	"k8s.io/kubectl/pkg/util/i18n"
)

// RunsKubectl says whether args (os.Args) run the embedded kubectl:
// `headway kubectl ...`.
func RunsKubectl(args []string) bool {
	return len(args) > 1 && args[1] == "kubectl"
}

func init() {
	if !RunsKubectl(os.Args) {
		_ = i18n.SetLoadTranslationsFunc(func() error { return nil })
	}
}
