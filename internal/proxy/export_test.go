package proxy

// ProgrammingLatency is exposed to the integration tests (package proxy_test).
var ProgrammingLatency = programmingLatency
