package network

// InNS is inNS for the package's external tests.
var InNS = inNS
