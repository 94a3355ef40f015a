package apiserver

// Impersonation: a user allowed to may act as another one with the
// Impersonate-User, Impersonate-Group, Impersonate-Uid and
// Impersonate-Extra-<key> headers (kubectl --as, --as-group, --as-uid).
// Each requested identity is authorized with the impersonate verb on users,
// serviceaccounts, groups, uids or userextras, as kube-apiserver does.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// impersonate replaces the request's user with the one its impersonation
// headers ask for, when the authenticated user may impersonate it.
func (s *Server) impersonate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asUser := r.Header.Get(authenticationv1.ImpersonateUserHeader)
		asGroups := r.Header.Values(authenticationv1.ImpersonateGroupHeader)
		asUID := r.Header.Get(authenticationv1.ImpersonateUIDHeader)
		extra := map[string][]string{}
		var extraHeaders []string
		for h, vs := range r.Header {
			if !strings.HasPrefix(h, authenticationv1.ImpersonateUserExtraHeaderPrefix) {
				continue
			}
			extraHeaders = append(extraHeaders, h)
			key := strings.ToLower(h[len(authenticationv1.ImpersonateUserExtraHeaderPrefix):])
			if k, err := url.PathUnescape(key); err == nil {
				key = k
			}
			extra[key] = append(extra[key], vs...)
		}
		if asUser == "" {
			if len(asGroups) > 0 || len(extra) > 0 || asUID != "" {
				// kube-apiserver answers this with an internal error too.
				s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("requested impersonation of groups, extra or uid without impersonating a user")))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		requestor, _ := request.UserFrom(r.Context())
		check := func(attrs authorizer.AttributesRecord) bool {
			if s.cfg.Authorizer == nil {
				return true
			}
			attrs.User, attrs.Verb, attrs.ResourceRequest = requestor, "impersonate", true
			d, reason, err := s.cfg.Authorizer.Authorize(r.Context(), attrs)
			if err == nil && d == authorizer.DecisionAllow {
				return true
			}
			s.log.Debug("impersonation forbidden", "user", requestor.GetName(), "as", attrs.Resource+"/"+attrs.Name, "reason", reason, "err", err)
			s.writeError(w, r, forbidden(attrs, reason))
			return false
		}

		var groups []string
		if ns, name, err := serviceaccount.SplitUsername(asUser); err == nil {
			if !check(authorizer.AttributesRecord{APIVersion: "v1", Resource: "serviceaccounts", Namespace: ns, Name: name}) {
				return
			}
			if len(asGroups) == 0 {
				groups = serviceaccount.MakeGroupNames(ns)
			}
		} else if !check(authorizer.AttributesRecord{APIVersion: "v1", Resource: "users", Name: asUser}) {
			return
		}
		for _, grp := range asGroups {
			if !check(authorizer.AttributesRecord{APIVersion: "v1", Resource: "groups", Name: grp}) {
				return
			}
			groups = append(groups, grp)
		}
		keys := make([]string, 0, len(extra))
		for k := range extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, v := range extra[k] {
				if !check(authorizer.AttributesRecord{APIGroup: authenticationv1.GroupName, APIVersion: "v1", Resource: "userextras", Subresource: k, Name: v}) {
					return
				}
			}
		}
		if asUID != "" && !check(authorizer.AttributesRecord{APIGroup: authenticationv1.GroupName, APIVersion: "v1", Resource: "uids", Name: asUID}) {
			return
		}

		if asUser == user.Anonymous {
			if !slices.Contains(groups, user.AllUnauthenticated) {
				groups = append(groups, user.AllUnauthenticated)
			}
		} else if !slices.Contains(groups, user.AllAuthenticated) && !slices.Contains(groups, user.AllUnauthenticated) {
			groups = append(groups, user.AllAuthenticated)
		}
		as := &user.DefaultInfo{Name: asUser, UID: asUID, Groups: groups}
		if len(extra) > 0 {
			as.Extra = extra
		}
		r = r.WithContext(request.WithUser(r.Context(), as))
		r.Header.Del(authenticationv1.ImpersonateUserHeader)
		r.Header.Del(authenticationv1.ImpersonateGroupHeader)
		r.Header.Del(authenticationv1.ImpersonateUIDHeader)
		for _, h := range extraHeaders {
			r.Header.Del(h)
		}
		next.ServeHTTP(w, r)
	})
}
