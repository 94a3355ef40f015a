package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// wantsAggregated reports whether the Accept header asks for aggregated
// discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList) in a form we serve.
func wantsAggregated(r *http.Request) (mediaType string, ok bool) {
	for _, mr := range parseAccept(r.Header.Get("Accept")) {
		if mr.params["as"] == "APIGroupDiscoveryList" && mr.params["g"] == "apidiscovery.k8s.io" && mr.params["v"] == "v2" {
			switch mr.typ {
			case mediaJSON:
				return mediaJSON, true
			case mediaProtobuf:
				return mediaProtobuf, true
			}
		}
		if mr.params["as"] == "" {
			// A plain type listed before any aggregated one wins.
			switch mr.typ {
			case mediaJSON, "*/*", "application/*":
				return "", false
			}
		}
	}
	return "", false
}

func (s *Server) serveDiscoveryAPI(w http.ResponseWriter, r *http.Request) {
	if mt, ok := wantsAggregated(r); ok {
		s.writeAggregated(w, mt, []string{""})
		return
	}
	obj := &metav1.APIVersions{
		Versions:                   s.index().versions[""],
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}},
	}
	s.writeObject(w, outputFormat{mediaType: mediaJSON}, http.StatusOK, obj)
}

func (s *Server) serveDiscoveryAPIs(w http.ResponseWriter, r *http.Request) {
	idx := s.index()
	var groups []string
	for _, g := range idx.groups {
		if g != "" {
			groups = append(groups, g)
		}
	}
	if mt, ok := wantsAggregated(r); ok {
		s.writeAggregated(w, mt, groups)
		return
	}
	list := &metav1.APIGroupList{}
	for _, g := range groups {
		list.Groups = append(list.Groups, idx.apiGroup(g))
	}
	s.writeObject(w, outputFormat{mediaType: mediaJSON}, http.StatusOK, list)
}

func (idx *apiIndex) apiGroup(g string) metav1.APIGroup {
	grp := metav1.APIGroup{Name: g}
	for _, v := range idx.versions[g] {
		grp.Versions = append(grp.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
	}
	grp.PreferredVersion = grp.Versions[0]
	return grp
}

// serveDiscoveryPath answers /api/v1, /apis/<group>, /apis/<group>/<version>.
func (s *Server) serveDiscoveryPath(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "api":
		s.writeResourceList(w, r, schema.GroupVersion{Version: parts[1]})
		return
	case len(parts) == 2 && parts[0] == "apis":
		if idx := s.index(); idx.versions[parts[1]] != nil && parts[1] != "" {
			grp := idx.apiGroup(parts[1])
			s.writeObject(w, outputFormat{mediaType: mediaJSON}, http.StatusOK, &grp)
			return
		}
	case len(parts) == 3 && parts[0] == "apis":
		s.writeResourceList(w, r, schema.GroupVersion{Group: parts[1], Version: parts[2]})
		return
	}
	s.writeError(w, r, notFoundResource())
}

func (s *Server) writeResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	if gv.Group == "" && gv.Version == "" {
		s.writeError(w, r, notFoundResource())
		return
	}
	ress, ok := s.index().byGV[gv]
	if !ok {
		s.writeError(w, r, notFoundResource())
		return
	}
	list := &metav1.APIResourceList{GroupVersion: gv.String()}
	for _, res := range ress {
		reg := res.reg
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name:               reg.Plural,
			SingularName:       reg.Singular,
			Namespaced:         reg.Namespaced,
			Kind:               reg.Kind,
			Verbs:              res.verbs(),
			ShortNames:         reg.ShortNames,
			Categories:         reg.Categories,
			StorageVersionHash: res.storageVersionHash(),
		})
		for _, sub := range res.subresources() {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name:       reg.Plural + "/" + sub.name,
				Namespaced: reg.Namespaced,
				Group:      sub.kind.Group,
				Version:    sub.kind.Version,
				Kind:       sub.kind.Kind,
				Verbs:      sub.verbs,
			})
		}
	}
	s.writeObject(w, outputFormat{mediaType: mediaJSON}, http.StatusOK, list)
}

// storageVersionHash identifies how the resource is stored: a custom
// resource's versions share their definition's storage version.
func (res *resource) storageVersionHash() string {
	if res.custom != nil {
		return storageVersionHash(res.custom.storageGV, res.reg.Kind)
	}
	return storageVersionHash(res.reg.GroupVersion, res.reg.Kind)
}

func storageVersionHash(gv schema.GroupVersion, kind string) string {
	sum := sha256.Sum256([]byte(gv.Group + "/" + gv.Version + "/" + kind))
	return hex.EncodeToString(sum[:])[:11]
}

func (s *Server) writeAggregated(w http.ResponseWriter, mediaType string, groups []string) {
	list := &apidiscoveryv2.APIGroupDiscoveryList{}
	idx := s.index()
	for _, g := range groups {
		item := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g}}
		for _, v := range idx.versions[g] {
			gv := schema.GroupVersion{Group: g, Version: v}
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
			for _, res := range idx.byGV[gv] {
				reg := res.reg
				scope := apidiscoveryv2.ScopeCluster
				if reg.Namespaced {
					scope = apidiscoveryv2.ScopeNamespace
				}
				kind := reg.GroupVersionKind()
				rd := apidiscoveryv2.APIResourceDiscovery{
					Resource:         reg.Plural,
					ResponseKind:     &metav1.GroupVersionKind{Group: kind.Group, Version: kind.Version, Kind: kind.Kind},
					Scope:            scope,
					SingularResource: reg.Singular,
					Verbs:            res.verbs(),
					ShortNames:       reg.ShortNames,
					Categories:       reg.Categories,
				}
				for _, sub := range res.subresources() {
					rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
						Subresource:  sub.name,
						ResponseKind: &metav1.GroupVersionKind{Group: sub.kind.Group, Version: sub.kind.Version, Kind: sub.kind.Kind},
						Verbs:        sub.verbs,
					})
				}
				vd.Resources = append(vd.Resources, rd)
			}
			sort.Slice(vd.Resources, func(i, j int) bool { return vd.Resources[i].Resource < vd.Resources[j].Resource })
			item.Versions = append(item.Versions, vd)
		}
		list.Items = append(list.Items, item)
	}
	list.SetGroupVersionKind(apidiscoveryv2.SchemeGroupVersion.WithKind("APIGroupDiscoveryList"))
	ct := mediaType + ";g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
	var body []byte
	var err error
	if mediaType == mediaProtobuf {
		var buf strings.Builder
		err = s.codecs.proto.Encode(list, &buf)
		body = []byte(buf.String())
	} else {
		body, err = json.Marshal(list)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	if s.cfg.OpenAPI == nil {
		s.writeError(w, r, notFoundResource())
		return
	}
	s.cfg.OpenAPI.ServeHTTP(w, r)
}
