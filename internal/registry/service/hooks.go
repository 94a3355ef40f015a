package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

var serviceKind = schema.GroupKind{Kind: "Service"}

func wantsClusterIP(s *corev1.Service) bool {
	return s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone
}

func wantsNodePorts(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func clusterIPsOf(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func nodePortsOf(s *corev1.Service) map[int]bool {
	out := map[int]bool{}
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			out[int(p.NodePort)] = true
		}
	}
	return out
}

func (a Allocators) hooks() registry.Hooks {
	if a.IPs == nil && a.Ports == nil {
		return registry.Hooks{}
	}
	return registry.Hooks{
		BeforeCreate: func(ctx context.Context, obj runtime.Object) error {
			return a.allocate(ctx, obj.(*corev1.Service), nil)
		},
		AfterCreateFailed: func(ctx context.Context, obj runtime.Object) { a.release(ctx, obj.(*corev1.Service), nil) },
		AfterDelete:       func(ctx context.Context, obj runtime.Object) { a.release(ctx, obj.(*corev1.Service), nil) },
		BeforeUpdate: func(ctx context.Context, obj, old runtime.Object) error {
			return a.allocate(ctx, obj.(*corev1.Service), old.(*corev1.Service))
		},
		AfterUpdate: func(ctx context.Context, obj, old runtime.Object, stored bool) {
			if stored {
				a.release(ctx, old.(*corev1.Service), obj.(*corev1.Service))
			} else {
				a.release(ctx, obj.(*corev1.Service), old.(*corev1.Service))
			}
		},
	}
}

func owner(s *corev1.Service) string { return s.Namespace + "/" + s.Name }

// storeFailed is the answer when the reservations cannot be written.
func storeFailed(what string, s *corev1.Service, err error) error {
	return apierrors.NewInternalError(fmt.Errorf("reserving a %s for Service %s: %w (is the store reachable? retry)", what, owner(s), err))
}

// allocate gives s what it needs that old (nil on create) did not hold,
// reserving it in the store; on failure nothing stays reserved.
func (a Allocators) allocate(ctx context.Context, s, old *corev1.Service) error {
	var held []netip.Addr
	var heldPorts []int
	undo := func() {
		// Released even when the request's context has ended.
		ctx := context.WithoutCancel(ctx)
		for _, ip := range held {
			_ = a.IPs.Release(ctx, ip)
		}
		for _, p := range heldPorts {
			_ = a.Ports.Release(ctx, p)
		}
	}
	var oldIPs map[netip.Addr]bool
	if old != nil {
		oldIPs = map[netip.Addr]bool{}
		for _, ip := range clusterIPsOf(old) {
			oldIPs[ip] = true
		}
	}
	if a.IPs != nil && wantsClusterIP(s) {
		if s.Spec.ClusterIP == "" {
			ip, err := a.IPs.Allocate(ctx, owner(s))
			if errors.Is(err, ErrFull) {
				return apierrors.NewInternalError(errors.New("failed to allocate a serviceIP: " + err.Error() + "; widen --service-cidr or delete unused Services"))
			}
			if err != nil {
				return storeFailed("cluster IP", s, err)
			}
			held = append(held, ip)
			s.Spec.ClusterIP = ip.String()
			s.Spec.ClusterIPs = []string{ip.String()}
		} else if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil && !oldIPs[ip] {
			if err := a.IPs.AllocateSpecific(ctx, ip, owner(s)); err != nil {
				if !errors.Is(err, ErrAllocated) && !errors.Is(err, ErrNotInRange) {
					return storeFailed("cluster IP", s, err)
				}
				return apierrors.NewInvalid(serviceKind, s.Name, field.ErrorList{
					field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), s.Spec.ClusterIP, "failed to allocate IP "+s.Spec.ClusterIP+": "+err.Error())})
			}
			held = append(held, ip)
		}
	}
	if a.Ports != nil && wantsNodePorts(s) {
		oldPorts := map[int]bool{}
		byPort := map[string]int32{}
		if old != nil {
			oldPorts = nodePortsOf(old)
			for _, p := range old.Spec.Ports {
				byPort[string(p.Protocol)+"/"+itoa(p.Port)] = p.NodePort
			}
		}
		for i := range s.Spec.Ports {
			p := &s.Spec.Ports[i]
			if p.NodePort == 0 {
				if prev := byPort[string(p.Protocol)+"/"+itoa(p.Port)]; prev != 0 {
					p.NodePort = prev
					continue
				}
				port, err := a.Ports.Allocate(ctx, owner(s))
				if err != nil {
					undo()
					if !errors.Is(err, ErrFull) {
						return storeFailed("node port", s, err)
					}
					return apierrors.NewInternalError(errors.New("failed to allocate a nodePort: " + err.Error()))
				}
				heldPorts = append(heldPorts, port)
				p.NodePort = int32(port)
				continue
			}
			if oldPorts[int(p.NodePort)] {
				continue
			}
			if err := a.Ports.AllocateSpecific(ctx, int(p.NodePort), owner(s)); err != nil {
				undo()
				if !errors.Is(err, ErrPortTaken) && !errors.Is(err, ErrPortNotRange) {
					return storeFailed("node port", s, err)
				}
				return apierrors.NewInvalid(serviceKind, s.Name, field.ErrorList{
					field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), p.NodePort, err.Error())})
			}
			heldPorts = append(heldPorts, int(p.NodePort))
		}
	}
	return nil
}

// release frees what s holds and keep (nil: nothing) does not. A
// reservation that cannot be deleted (the store unreachable) stays held.
func (a Allocators) release(ctx context.Context, s, keep *corev1.Service) {
	ctx = context.WithoutCancel(ctx)
	keepIPs := map[netip.Addr]bool{}
	keepPorts := map[int]bool{}
	if keep != nil {
		for _, ip := range clusterIPsOf(keep) {
			keepIPs[ip] = true
		}
		keepPorts = nodePortsOf(keep)
	}
	if a.IPs != nil {
		for _, ip := range clusterIPsOf(s) {
			if !keepIPs[ip] {
				_ = a.IPs.Release(ctx, ip)
			}
		}
	}
	if a.Ports != nil {
		for p := range nodePortsOf(s) {
			if !keepPorts[p] {
				_ = a.Ports.Release(ctx, p)
			}
		}
	}
}

// restore makes sure what a stored Service holds is reserved (stores
// written before reservations were keys).
func (a Allocators) restore(ctx context.Context, obj runtime.Object) error {
	s := obj.(*corev1.Service)
	if a.IPs != nil {
		for _, ip := range clusterIPsOf(s) {
			if err := a.IPs.Restore(ctx, ip, owner(s)); err != nil {
				return fmt.Errorf("reserving cluster IP %s of Service %s: %w", ip, owner(s), err)
			}
		}
	}
	if a.Ports != nil {
		for p := range nodePortsOf(s) {
			if err := a.Ports.Restore(ctx, p, owner(s)); err != nil {
				return fmt.Errorf("reserving node port %d of Service %s: %w", p, owner(s), err)
			}
		}
	}
	return nil
}
