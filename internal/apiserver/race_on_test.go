//go:build race

package apiserver_test

// raceEnabled: the race detector slows JSON and TLS work several times;
// timing assertions are only logged.
const raceEnabled = true
