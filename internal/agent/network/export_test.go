package network

// InNS is inNS for the package's external tests.
var InNS = inNS

// VethName is vethName for the package's external tests.
var VethName = vethName
