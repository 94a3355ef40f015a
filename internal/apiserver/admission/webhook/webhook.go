// Package webhook calls the admission webhooks of MutatingWebhookConfigurations
// and ValidatingWebhookConfigurations: an admission.k8s.io/v1 AdmissionReview
// POSTed over HTTPS (verified with the caBundle) to a URL or a Service, for
// the requests their rules, namespaceSelector and objectSelector match. A
// webhook that denies answers the request (`admission webhook "x" denied
// the request: ...`); one that cannot be called fails it or not by its
// failurePolicy; a mutating webhook's JSONPatch changes the object.
// Reinvocation and matchConditions are not supported.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/headway/headway/internal/apiserver/admission"
)

var (
	mutatingConfigs   = admissionregistrationv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations")
	validatingConfigs = admissionregistrationv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations")
)

// Resolver turns a webhook's Service reference into the host:port to dial.
type Resolver func(ctx context.Context, o admission.Objects, namespace, name string, port int32) (string, error)

// Options configure the plugins.
type Options struct {
	// Resolve resolves Service references; nil uses ResolveService (a ready
	// endpoint of the Service, else its cluster IP).
	Resolve Resolver
	Log     *slog.Logger
}

// Plugin calls one kind of webhook: mutating (an admission.Mutator) or
// validating (an admission.Validator).
type Plugin struct {
	mutating bool
	resolve  Resolver
	log      *slog.Logger

	mu         sync.Mutex
	transports map[string]*http.Transport // by caBundle and server name
}

// Mutating is the MutatingAdmissionWebhook plugin.
type Mutating struct{ p *Plugin }

// Validating is the ValidatingAdmissionWebhook plugin.
type Validating struct{ p *Plugin }

// NewMutating returns the plugin calling mutating webhooks.
func NewMutating(o Options) *Mutating { return &Mutating{newPlugin(true, o)} }

// NewValidating returns the plugin calling validating webhooks.
func NewValidating(o Options) *Validating { return &Validating{newPlugin(false, o)} }

func newPlugin(mutating bool, o Options) *Plugin {
	if o.Resolve == nil {
		o.Resolve = ResolveService
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Plugin{mutating: mutating, resolve: o.Resolve, log: o.Log, transports: map[string]*http.Transport{}}
}

// Name implements admission.Plugin.
func (*Mutating) Name() string { return "MutatingAdmissionWebhook" }

// Name implements admission.Plugin.
func (*Validating) Name() string { return "ValidatingAdmissionWebhook" }

// hook is one webhook with what the dispatcher needs of it, whichever kind.
type hook struct {
	name                    string
	clientConfig            admissionregistrationv1.WebhookClientConfig
	rules                   []admissionregistrationv1.RuleWithOperations
	failurePolicy           admissionregistrationv1.FailurePolicyType
	sideEffects             *admissionregistrationv1.SideEffectClass
	timeout                 time.Duration
	namespaceSelector       *metav1.LabelSelector
	objectSelector          *metav1.LabelSelector
	admissionReviewVersions []string
}

func newHook(name string, cc admissionregistrationv1.WebhookClientConfig, rules []admissionregistrationv1.RuleWithOperations,
	fp *admissionregistrationv1.FailurePolicyType, se *admissionregistrationv1.SideEffectClass, timeout *int32,
	ns, obj *metav1.LabelSelector, versions []string) hook {
	h := hook{name: name, clientConfig: cc, rules: rules, failurePolicy: admissionregistrationv1.Fail, sideEffects: se,
		timeout: 10 * time.Second, namespaceSelector: ns, objectSelector: obj, admissionReviewVersions: versions}
	if fp != nil {
		h.failurePolicy = *fp
	}
	if timeout != nil {
		h.timeout = time.Duration(*timeout) * time.Second
	}
	return h
}

// hooks lists the configured webhooks of the plugin's kind, configurations
// in name order, webhooks in their order.
func (p *Plugin) hooks(ctx context.Context, o admission.Objects) ([]hook, error) {
	gvr := validatingConfigs
	if p.mutating {
		gvr = mutatingConfigs
	}
	objs, err := o.List(ctx, gvr, "")
	if err != nil {
		return nil, err
	}
	var out []hook
	type named struct {
		name  string
		hooks []hook
	}
	var configs []named
	for _, obj := range objs {
		switch c := obj.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			n := named{name: c.Name}
			for _, w := range c.Webhooks {
				n.hooks = append(n.hooks, newHook(w.Name, w.ClientConfig, w.Rules, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.NamespaceSelector, w.ObjectSelector, w.AdmissionReviewVersions))
			}
			configs = append(configs, n)
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			n := named{name: c.Name}
			for _, w := range c.Webhooks {
				n.hooks = append(n.hooks, newHook(w.Name, w.ClientConfig, w.Rules, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.NamespaceSelector, w.ObjectSelector, w.AdmissionReviewVersions))
			}
			configs = append(configs, n)
		}
	}
	sort.Slice(configs, func(i, j int) bool { return configs[i].name < configs[j].name })
	for _, c := range configs {
		out = append(out, c.hooks...)
	}
	return out, nil
}

// exempt: webhook configurations themselves never go to webhooks, so a
// broken webhook cannot lock out its own fix (as kube-apiserver).
func exempt(a *admission.Attributes) bool {
	return a.Resource.Group == "admissionregistration.k8s.io" &&
		(a.Resource.Resource == "mutatingwebhookconfigurations" || a.Resource.Resource == "validatingwebhookconfigurations" ||
			a.Resource.Resource == "validatingadmissionpolicies" || a.Resource.Resource == "validatingadmissionpolicybindings")
}

// matching returns the hooks that apply to the request.
func (p *Plugin) matching(ctx context.Context, a *admission.Attributes, o admission.Objects) ([]hook, error) {
	if exempt(a) || a.Operation == admission.Connect {
		return nil, nil
	}
	all, err := p.hooks(ctx, o)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	var nsLabels map[string]string
	nsKnown := false
	var out []hook
	for _, h := range all {
		if !MatchesRules(h.rules, a) {
			continue
		}
		ok, err := objectMatches(h.objectSelector, a)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("webhook %q: %w", h.name, err))
		}
		if !ok {
			continue
		}
		if !nsKnown {
			nsLabels, err = namespaceLabels(ctx, a, o)
			if err != nil {
				return nil, err
			}
			nsKnown = true
		}
		if ok, err := namespaceMatches(h.namespaceSelector, a, nsLabels); err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("webhook %q: %w", h.name, err))
		} else if !ok {
			continue
		}
		out = append(out, h)
	}
	return out, nil
}

// Admit calls the mutating webhooks in order, each seeing what the earlier
// ones patched.
func (m *Mutating) Admit(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	p := m.p
	hooks, err := p.matching(ctx, a, o)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		if err := dryRunSupported(h, a); err != nil {
			return err
		}
		resp, err := p.call(ctx, h, a, o)
		if err != nil {
			if failOpen(p, h, err) {
				continue
			}
			return apierrors.NewInternalError(err)
		}
		if !resp.Allowed {
			return ToStatusErr(h.name, resp.Result)
		}
		if len(resp.Patch) == 0 {
			continue
		}
		if err := applyPatch(h, a, resp); err != nil {
			var callErr *ErrCallingWebhook
			if errors.As(err, &callErr) {
				if failOpen(p, h, err) {
					continue
				}
				return apierrors.NewInternalError(err)
			}
			return err
		}
	}
	return nil
}

// Validate calls the validating webhooks at once; the first (in order)
// that denies or fails answers the request.
func (v *Validating) Validate(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	p := v.p
	hooks, err := p.matching(ctx, a, o)
	if err != nil {
		return err
	}
	errs := make([]error, len(hooks))
	var wg sync.WaitGroup
	for i, h := range hooks {
		if err := dryRunSupported(h, a); err != nil {
			errs[i] = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.call(ctx, h, a, o)
			switch {
			case err != nil:
				if !failOpen(p, h, err) {
					errs[i] = apierrors.NewInternalError(err)
				}
			case !resp.Allowed:
				errs[i] = ToStatusErr(h.name, resp.Result)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// failOpen reports (and logs) a call failure a failurePolicy Ignore webhook
// lets pass.
func failOpen(p *Plugin, h hook, err error) bool {
	if h.failurePolicy != admissionregistrationv1.Ignore {
		p.log.Warn("failed calling webhook, failing closed", "webhook", h.name, "err", err)
		return false
	}
	p.log.Warn("failed calling webhook, failing open", "webhook", h.name, "err", err)
	return true
}

// dryRunSupported: a dry run may only reach webhooks without side effects
// (or whose side effects skip dry runs).
func dryRunSupported(h hook, a *admission.Attributes) error {
	if !a.DryRun {
		return nil
	}
	if h.sideEffects != nil && (*h.sideEffects == admissionregistrationv1.SideEffectClassNone || *h.sideEffects == admissionregistrationv1.SideEffectClassNoneOnDryRun) {
		return nil
	}
	return apierrors.NewBadRequest(fmt.Sprintf("admission webhook %q does not support dry run", h.name))
}

// ErrCallingWebhook is a failure to get an answer from a webhook (not the
// webhook refusing the request).
type ErrCallingWebhook struct {
	WebhookName string
	Reason      error
}

func (e *ErrCallingWebhook) Error() string {
	return fmt.Sprintf("failed calling webhook %q: %v", e.WebhookName, e.Reason)
}

func (e *ErrCallingWebhook) Unwrap() error { return e.Reason }

// ToStatusErr is kube-apiserver's answer for a webhook that denied the
// request: its status, at least 400, with the message prefixed.
func ToStatusErr(name string, result *metav1.Status) *apierrors.StatusError {
	deniedBy := fmt.Sprintf("admission webhook %q denied the request", name)
	st := metav1.Status{Status: metav1.StatusFailure}
	if result != nil {
		st = *result
	}
	if st.Code < http.StatusBadRequest {
		st.Code = http.StatusBadRequest
	}
	if st.Status == "" || st.Status == metav1.StatusSuccess {
		st.Status = metav1.StatusFailure
	}
	switch {
	case st.Message != "":
		st.Message = deniedBy + ": " + st.Message
	case st.Reason != "":
		st.Message = deniedBy + ": " + string(st.Reason)
	default:
		st.Message = deniedBy + " without explanation"
	}
	return &apierrors.StatusError{ErrStatus: st}
}

// review builds the AdmissionReview of a request.
func review(a *admission.Attributes) (*admissionv1.AdmissionReview, error) {
	kind := metav1.GroupVersionKind{Group: a.Kind.Group, Version: a.Kind.Version, Kind: a.Kind.Kind}
	res := metav1.GroupVersionResource{Group: a.Resource.Group, Version: a.Resource.Version, Resource: a.Resource.Resource}
	dryRun := a.DryRun
	req := &admissionv1.AdmissionRequest{
		UID:                types.UID(uuid.NewString()),
		Kind:               kind,
		Resource:           res,
		SubResource:        a.Subresource,
		RequestKind:        &kind,
		RequestResource:    &res,
		RequestSubResource: a.Subresource,
		Name:               a.Name,
		Namespace:          a.Namespace,
		Operation:          admissionv1.Operation(a.Operation),
		UserInfo:           a.User,
		DryRun:             &dryRun,
	}
	var err error
	if req.Object.Raw, err = encode(a.Object, a); err != nil {
		return nil, err
	}
	if req.OldObject.Raw, err = encode(a.OldObject, a); err != nil {
		return nil, err
	}
	if a.Options != nil {
		if req.Options.Raw, err = json.Marshal(a.Options); err != nil {
			return nil, err
		}
	}
	if req.Name == "" && a.Object != nil {
		if m, ok := a.Object.(metav1.Object); ok {
			req.Name = m.GetName()
		}
	}
	r := &admissionv1.AdmissionReview{Request: req}
	r.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
	return r, nil
}

// encode is the JSON of an object with its apiVersion and kind.
func encode(obj runtime.Object, a *admission.Attributes) ([]byte, error) {
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		return nil, nil
	}
	c := obj.DeepCopyObject()
	c.GetObjectKind().SetGroupVersionKind(a.Kind)
	return json.Marshal(c)
}

// call sends the AdmissionReview and checks the answer is one.
func (p *Plugin) call(ctx context.Context, h hook, a *admission.Attributes, o admission.Objects) (*admissionv1.AdmissionResponse, error) {
	fail := func(format string, args ...any) error {
		return &ErrCallingWebhook{WebhookName: h.name, Reason: fmt.Errorf(format, args...)}
	}
	v1 := false
	for _, v := range h.admissionReviewVersions {
		v1 = v1 || v == "v1"
	}
	if !v1 {
		return nil, fail("webhook does not accept v1 AdmissionReview (admissionReviewVersions %v)", h.admissionReviewVersions)
	}
	rev, err := review(a)
	if err != nil {
		return nil, fail("could not create admission objects: %w", err)
	}
	body, err := json.Marshal(rev)
	if err != nil {
		return nil, fail("could not create admission objects: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	url, serverName, err := p.target(ctx, h, o)
	if err != nil {
		return nil, fail("%w", err)
	}
	tr, err := p.transport(h.clientConfig.CABundle, serverName)
	if err != nil {
		return nil, fail("%w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fail("%w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	q := req.URL.Query()
	q.Set("timeout", strconv.Itoa(int(h.timeout/time.Second))+"s")
	req.URL.RawQuery = q.Encode()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fail("failed to call webhook: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 3*1024*1024))
	if err != nil {
		return nil, fail("failed to call webhook: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fail("failed to call webhook: the server responded with status %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fail("received invalid webhook response: %w", err)
	}
	switch {
	case out.Response == nil:
		return nil, fail("received invalid webhook response: webhook response was absent")
	case out.Response.UID != rev.Request.UID:
		return nil, fail("received invalid webhook response: expected response.uid=%q, got %q", rev.Request.UID, out.Response.UID)
	case out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview":
		return nil, fail("received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got %s", out.GroupVersionKind())
	}
	r := out.Response
	if p.mutating {
		if len(r.Patch) > 0 && r.PatchType == nil {
			return nil, fail("received invalid webhook response: webhook returned response.patch but not response.patchType")
		}
		if len(r.Patch) == 0 && r.PatchType != nil {
			return nil, fail("received invalid webhook response: webhook returned response.patchType but not response.patch")
		}
		if r.PatchType != nil && *r.PatchType != admissionv1.PatchTypeJSONPatch {
			return nil, fail("received invalid webhook response: webhook returned invalid response.patchType of %q", *r.PatchType)
		}
	} else {
		if len(r.Patch) > 0 {
			return nil, fail("received invalid webhook response: validating webhook may not return response.patch")
		}
		if r.PatchType != nil {
			return nil, fail("received invalid webhook response: validating webhook may not return response.patchType")
		}
	}
	return r, nil
}

// applyPatch applies a mutating webhook's JSONPatch to the request's
// object, replacing it with the patched one.
func applyPatch(h hook, a *admission.Attributes, r *admissionv1.AdmissionResponse) error {
	patch, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		return &ErrCallingWebhook{WebhookName: h.name, Reason: fmt.Errorf("received undecodable patch in webhook response: %w", err)}
	}
	if len(patch) == 0 {
		return nil
	}
	if a.Object == nil || reflect.ValueOf(a.Object).IsNil() {
		return apierrors.NewInternalError(fmt.Errorf("admission webhook %q attempted to modify the object, which is not supported for this operation", h.name))
	}
	doc, err := encode(a.Object, a)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	patched, err := patch.Apply(doc)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	next := reflect.New(reflect.TypeOf(a.Object).Elem()).Interface().(runtime.Object)
	if err := json.Unmarshal(patched, next); err != nil {
		return apierrors.NewInternalError(err)
	}
	if next.GetObjectKind().GroupVersionKind() != a.Kind {
		return apierrors.NewInternalError(fmt.Errorf("admission webhook %q changed the object's apiVersion or kind", h.name))
	}
	a.Object = next
	return nil
}

// target is the URL to POST to and the TLS server name to verify.
func (p *Plugin) target(ctx context.Context, h hook, o admission.Objects) (string, string, error) {
	cc := h.clientConfig
	if cc.URL != nil {
		return *cc.URL, "", nil
	}
	if cc.Service == nil {
		return "", "", errors.New("the webhook has neither a url nor a service")
	}
	port := int32(443)
	if cc.Service.Port != nil {
		port = *cc.Service.Port
	}
	hostPort, err := p.resolve(ctx, o, cc.Service.Namespace, cc.Service.Name, port)
	if err != nil {
		return "", "", err
	}
	path := ""
	if cc.Service.Path != nil {
		path = *cc.Service.Path
	}
	return "https://" + hostPort + path, cc.Service.Name + "." + cc.Service.Namespace + ".svc", nil
}

// transport is an HTTPS transport trusting caBundle (the system roots
// without one), verifying serverName when set; transports are kept so that
// connections are reused.
func (p *Plugin) transport(caBundle []byte, serverName string) (*http.Transport, error) {
	key := serverName + "\x00" + string(caBundle)
	p.mu.Lock()
	defer p.mu.Unlock()
	if tr, ok := p.transports[key]; ok {
		return tr, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("the webhook's caBundle holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	p.transports[key] = tr
	return tr, nil
}

var (
	_ admission.Mutator   = (*Mutating)(nil)
	_ admission.Validator = (*Validating)(nil)
)
