package endpointslice

import (
	"maps"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Changes are the slice writes that bring a service's slices to the
// desired endpoints.
type Changes struct {
	Create []*discoveryv1.EndpointSlice
	Update []*discoveryv1.EndpointSlice
	Delete []*discoveryv1.EndpointSlice
}

// Empty reports whether nothing needs writing.
func (c Changes) Empty() bool { return len(c.Create)+len(c.Update)+len(c.Delete) == 0 }

// SliceLabels are the labels of the service's slices: the service's own,
// the service name, the manager and, for headless services, the headless
// marker.
func SliceLabels(svc *corev1.Service) map[string]string {
	l := map[string]string{}
	for k, v := range svc.Labels {
		switch k {
		case ServiceNameLabel, ManagedByLabel, HeadlessLabel:
			continue
		}
		l[k] = v
	}
	l[ServiceNameLabel] = svc.Name
	l[ManagedByLabel] = ManagedBy
	if IsHeadless(svc) {
		l[HeadlessLabel] = ""
	}
	return l
}

func newSlice(svc *corev1.Service, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	t := true
	prefix := svc.Name
	if len(prefix) > 57 {
		prefix = prefix[:57]
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: prefix + "-",
			Namespace:    svc.Namespace,
			Labels:       SliceLabels(svc),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: &t, BlockOwnerDeletion: &t}},
		},
		AddressType: at,
		Ports:       ports,
		Endpoints:   []discoveryv1.Endpoint{},
	}
}

func sortedPorts(ports []discoveryv1.EndpointPort) []discoveryv1.EndpointPort {
	out := append([]discoveryv1.EndpointPort(nil), ports...)
	sort.Slice(out, func(i, j int) bool {
		if deref(out[i].Name) != deref(out[j].Name) {
			return deref(out[i].Name) < deref(out[j].Name)
		}
		return derefInt(out[i].Port) < derefInt(out[j].Port)
	})
	return out
}

// Reconcile computes the minimal slice changes for a service: endpoints stay
// in the slice that holds them; a changed endpoint rewrites only its slice;
// new endpoints go first into slices being rewritten anyway, then into the
// fullest unchanged slice they all fit in, then into new slices of at most
// max endpoints. A service with no endpoints keeps one empty placeholder
// slice. triggerTime, when not empty, is written to the annotation of every
// created or updated slice. existing must be the service's managed slices;
// nothing in it is modified.
func Reconcile(svc *corev1.Service, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice, max int, triggerTime string) Changes {
	if max <= 0 {
		max = MaxEndpointsPerSlice
	}
	groups := desiredGroups(svc, pods)
	labels := SliceLabels(svc)
	var ch Changes
	stamp := func(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
		if triggerTime != "" {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[TriggerTimeAnnotation] = triggerTime
		}
		return s
	}
	sorted := append([]*discoveryv1.EndpointSlice(nil), existing...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	total := 0
	for _, g := range groups {
		total += len(g.entries)
	}
	if total == 0 {
		// The placeholder: one empty slice, the others go.
		ats := addressTypes(svc)
		var keep *discoveryv1.EndpointSlice
		for _, s := range sorted {
			if keep == nil && len(s.Endpoints) == 0 && len(s.Ports) == 0 && s.AddressType == ats[0] {
				keep = s
				if !maps.Equal(s.Labels, labels) {
					u := s.DeepCopy()
					u.Labels = labels
					ch.Update = append(ch.Update, stamp(u))
				}
				continue
			}
			ch.Delete = append(ch.Delete, s)
		}
		if keep == nil {
			ch.Create = append(ch.Create, stamp(newSlice(svc, ats[0], []discoveryv1.EndpointPort{})))
		}
		return ch
	}

	byGroup := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range sorted {
		k := groupKey(s.AddressType, sortedPorts(s.Ports))
		byGroup[k] = append(byGroup[k], s)
	}
	for _, g := range groups {
		desired := map[string]discoveryv1.Endpoint{}
		for _, e := range g.entries {
			desired[e.key] = e.endpoint
		}
		placed := map[string]bool{}
		var updating, unchanged []*discoveryv1.EndpointSlice
		for _, s := range byGroup[g.key()] {
			changed := !maps.Equal(s.Labels, labels)
			eps := make([]discoveryv1.Endpoint, 0, len(s.Endpoints))
			for i := range s.Endpoints {
				k := keyOf(&s.Endpoints[i])
				d, ok := desired[k]
				if !ok || placed[k] {
					changed = true
					continue
				}
				placed[k] = true
				if !apiequality.Semantic.DeepEqual(s.Endpoints[i], d) {
					changed = true
				}
				eps = append(eps, d)
			}
			switch {
			case !changed:
				unchanged = append(unchanged, s)
			case len(eps) == 0:
				ch.Delete = append(ch.Delete, s)
			default:
				u := s.DeepCopy()
				u.Labels = labels
				u.Endpoints = eps
				updating = append(updating, u)
			}
		}
		delete(byGroup, g.key())
		var remaining []discoveryv1.Endpoint
		for _, e := range g.entries {
			if !placed[e.key] {
				remaining = append(remaining, e.endpoint)
			}
		}
		// Into slices being written anyway.
		for _, u := range updating {
			for len(remaining) > 0 && len(u.Endpoints) < max {
				u.Endpoints = append(u.Endpoints, remaining[0])
				remaining = remaining[1:]
			}
		}
		// Into the fullest unchanged slice that takes them all.
		if n := len(remaining); n > 0 {
			var best *discoveryv1.EndpointSlice
			for _, s := range unchanged {
				if free := max - len(s.Endpoints); free >= n && (best == nil || len(s.Endpoints) > len(best.Endpoints)) {
					best = s
				}
			}
			if best != nil {
				u := best.DeepCopy()
				u.Endpoints = append(u.Endpoints, remaining...)
				remaining = nil
				updating = append(updating, u)
			}
		}
		for _, u := range updating {
			ch.Update = append(ch.Update, stamp(u))
		}
		for len(remaining) > 0 {
			n := min(len(remaining), max)
			s := newSlice(svc, g.addressType, g.ports)
			s.Endpoints = append(s.Endpoints, remaining[:n]...)
			remaining = remaining[n:]
			ch.Create = append(ch.Create, stamp(s))
		}
	}
	// Slices of groups that no longer exist.
	var stale []string
	for k := range byGroup {
		stale = append(stale, k)
	}
	sort.Strings(stale)
	for _, k := range stale {
		ch.Delete = append(ch.Delete, byGroup[k]...)
	}
	return reusePlaceholders(ch)
}

// reusePlaceholders turns the creation of a slice plus the deletion of an
// empty one of the same address type into one update of the empty slice:
// one write instead of two, and the slice keeps its name.
func reusePlaceholders(ch Changes) Changes {
	var creates []*discoveryv1.EndpointSlice
	for _, c := range ch.Create {
		reused := false
		for i, d := range ch.Delete {
			if len(d.Endpoints) != 0 || d.AddressType != c.AddressType {
				continue
			}
			u := d.DeepCopy()
			u.Labels, u.Ports, u.Endpoints = c.Labels, c.Ports, c.Endpoints
			for k, v := range c.Annotations {
				if u.Annotations == nil {
					u.Annotations = map[string]string{}
				}
				u.Annotations[k] = v
			}
			ch.Update = append(ch.Update, u)
			ch.Delete = append(ch.Delete[:i:i], ch.Delete[i+1:]...)
			reused = true
			break
		}
		if !reused {
			creates = append(creates, c)
		}
	}
	ch.Create = creates
	return ch
}
