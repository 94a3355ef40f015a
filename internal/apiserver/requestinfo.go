package apiserver

import (
	"net/http"
	"strings"
)

// requestInfo is what a resource URL says.
type requestInfo struct {
	// APIPrefix is "api" or "apis".
	APIPrefix   string
	Group       string
	Version     string
	Namespace   string
	Resource    string
	Name        string
	Subresource string
	// Verb is the Kubernetes verb: get, list, watch, create, update, patch,
	// delete, deletecollection.
	Verb string
	// Parts past the subresource (proxy paths); rarely used.
	Rest []string
}

// namespaceSubresources are subresources of a namespace object, so that
// /api/v1/namespaces/foo/status is the status of namespace foo, not a
// resource called "status" in namespace foo.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// parseRequestInfo reads a resource request from its path. ok is false for
// paths that are not resource requests (discovery, health, ...).
func parseRequestInfo(r *http.Request) (requestInfo, bool) {
	path := strings.Trim(r.URL.Path, "/")
	parts := strings.Split(path, "/")
	var info requestInfo
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		info.APIPrefix, info.Version = "api", parts[1]
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		info.APIPrefix, info.Group, info.Version = "apis", parts[1], parts[2]
		parts = parts[3:]
	default:
		return info, false
	}
	watchPrefix := false
	if parts[0] == "watch" {
		watchPrefix = true
		parts = parts[1:]
		if len(parts) == 0 {
			return info, false
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		info.Namespace = parts[1]
		if len(parts) > 2 && !namespaceSubresources[parts[2]] {
			parts = parts[2:]
		}
	}
	info.Resource = parts[0]
	if len(parts) > 1 {
		info.Name = parts[1]
	}
	if len(parts) > 2 {
		info.Subresource = parts[2]
	}
	if len(parts) > 3 {
		info.Rest = parts[3:]
	}
	// For the namespaces resource itself, the "namespace" is its name.
	if info.Resource == "namespaces" && info.Name == "" && info.Namespace != "" {
		info.Name = info.Namespace
	}
	if info.Resource == "namespaces" {
		info.Namespace = ""
	}

	q := r.URL.Query()
	isWatch := watchPrefix || q.Get("watch") == "true" || q.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case isWatch:
			info.Verb = "watch"
		case info.Name == "":
			info.Verb = "list"
		default:
			info.Verb = "get"
		}
	case http.MethodPost:
		info.Verb = "create"
	case http.MethodPut:
		info.Verb = "update"
	case http.MethodPatch:
		info.Verb = "patch"
	case http.MethodDelete:
		if info.Name == "" {
			info.Verb = "deletecollection"
		} else {
			info.Verb = "delete"
		}
	default:
		info.Verb = strings.ToLower(r.Method)
	}
	return info, true
}
