package openapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// Media types of the served documents.
const (
	// MediaTypeV2Protobuf is the Content-Type of the protobuf Swagger 2.0
	// document. Clients ask for it as this or as
	// application/com.github.proto-openapi.spec.v2@v1.0+protobuf (client-go
	// does), which is not a valid media type to answer with.
	MediaTypeV2Protobuf = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
	mediaTypeJSON       = "application/json"
)

// ServeHTTP serves GET /openapi/v2 (JSON, or protobuf when the Accept header
// asks for it), /openapi/v3 (the index) and /openapi/v3/<group-version>.
// A group-version request whose hash query parameter is not the current one
// is redirected to the current URL, as kube-apiserver does; a request with
// the current hash may be cached for good.
func (d *Documents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	accept := r.Header.Get("Accept")
	switch path := strings.TrimSuffix(r.URL.Path, "/"); {
	case path == "/openapi/v2":
		switch v2Format(accept) {
		case "protobuf":
			serve(w, r, MediaTypeV2Protobuf, d.v2Proto, "")
		case "json":
			serve(w, r, mediaTypeJSON, d.v2JSON, "")
		default:
			http.Error(w, "only application/json and "+MediaTypeV2Protobuf+" are served", http.StatusNotAcceptable)
		}
	case path == "/openapi/v3":
		if !accepts(accept, mediaTypeJSON) {
			http.Error(w, "only application/json is served", http.StatusNotAcceptable)
			return
		}
		serve(w, r, mediaTypeJSON, d.v3Index, "")
	case strings.HasPrefix(path, "/openapi/v3/"):
		gv := strings.TrimPrefix(path, "/openapi/v3/")
		doc, ok := d.v3[gv]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if h := r.URL.Query().Get("hash"); h != "" && h != doc.hash {
			http.Redirect(w, r, "/openapi/v3/"+gv+"?hash="+doc.hash, http.StatusMovedPermanently)
			return
		}
		if !accepts(accept, mediaTypeJSON) {
			http.Error(w, "only application/json is served", http.StatusNotAcceptable)
			return
		}
		cache := ""
		if r.URL.Query().Get("hash") != "" {
			cache = "public, immutable"
		}
		serve(w, r, mediaTypeJSON, doc.blob, cache)
	default:
		http.NotFound(w, r)
	}
}

func serve(w http.ResponseWriter, r *http.Request, contentType string, body blob, cache string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("ETag", body.etag)
	h.Set("Vary", "Accept")
	if cache != "" {
		h.Set("Cache-Control", cache)
		h.Set("Expires", time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat))
	} else {
		h.Set("Cache-Control", "no-cache, private")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body.data))
}

func etag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// v2Format picks the first media type of an Accept header that the Swagger
// document is served as: "json", "protobuf" or "" for none.
func v2Format(header string) string {
	if strings.TrimSpace(header) == "" {
		return "json"
	}
	for _, part := range strings.Split(header, ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
			"application/com.github.proto-openapi.spec.v2.v1.0+protobuf":
			return "protobuf"
		case mediaTypeJSON, "application/*", "*/*":
			return "json"
		}
	}
	return ""
}

// accepts reports whether an Accept header admits mediaType. An empty header
// admits anything.
func accepts(header, mediaType string) bool {
	if strings.TrimSpace(header) == "" {
		return true
	}
	major, _, _ := strings.Cut(mediaType, "/")
	for _, part := range strings.Split(header, ",") {
		mt, _, _ := strings.Cut(part, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if mt == "*/*" || mt == major+"/*" || strings.HasPrefix(mt, mediaType) {
			return true
		}
	}
	return false
}
