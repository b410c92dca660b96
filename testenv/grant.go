package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Grant gives user the permissions in rules cluster-wide: it creates, with
// cfg (which must be allowed to manage RBAC, e.g. Env.Config), a ClusterRole
// holding rules and a ClusterRoleBinding of it to user, both under one fresh
// name "testenv-grant-<suffix>". It returns once the apiserver's authorizer
// allows the first verb on the first resource (or non-resource URL) of every
// rule, so a request made right after Grant sees the permission.
//
// revoke deletes both objects (a missing object is not an error); the
// permission ends once the authorizer sees the deletion. On error nothing
// created is left behind, as far as ctx allowed the cleanup.
//
// To grant to a group, or in one namespace only, create the RBAC objects
// directly.
func Grant(ctx context.Context, cfg *rest.Config, user string, rules []rbacv1.PolicyRule) (revoke func(context.Context) error, err error) {
	if user == "" {
		return nil, errors.New("testenv: Grant: the user name is empty")
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("testenv: Grant to %q: no rules", user)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("testenv: Grant to %q: %w", user, err)
	}
	rbac := cs.RbacV1()
	role, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-grant-"},
		Rules:      rules,
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("testenv: Grant to %q: create the ClusterRole: %w", user, err)
	}
	name := role.Name
	revoke = func(ctx context.Context) error {
		errB := rbac.ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		errR := rbac.ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})
		var errs []error
		for _, err := range []error{errB, errR} {
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("testenv: revoke grant %s from %q: %w", name, user, errors.Join(errs...))
		}
		return nil
	}
	fail := func(err error) (func(context.Context) error, error) {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		revoke(cleanup)
		return nil, err
	}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fail(fmt.Errorf("testenv: Grant to %q: create the ClusterRoleBinding %s: %w", user, name, err))
	}
	for _, r := range rules {
		if err := waitAllowed(ctx, cs, user, r); err != nil {
			return fail(fmt.Errorf("testenv: Grant to %q (%s): %w", user, name, err))
		}
	}
	return revoke, nil
}

// waitAllowed polls a SubjectAccessReview for a representative request of
// rule until the authorizer allows it (RBAC reads bindings from an informer,
// so a new binding takes effect a moment after it is created).
func waitAllowed(ctx context.Context, cs kubernetes.Interface, user string, rule rbacv1.PolicyRule) error {
	spec := authorizationv1.SubjectAccessReviewSpec{User: user}
	first := func(s []string) string {
		if len(s) == 0 {
			return ""
		}
		return s[0]
	}
	if len(rule.NonResourceURLs) > 0 {
		spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{
			Path: strings.TrimSuffix(first(rule.NonResourceURLs), "*"), Verb: first(rule.Verbs)}
	} else {
		resource, sub, _ := strings.Cut(first(rule.Resources), "/")
		spec.ResourceAttributes = &authorizationv1.ResourceAttributes{
			Verb: first(rule.Verbs), Group: first(rule.APIGroups), Resource: resource, Subresource: sub,
			Name: first(rule.ResourceNames)}
	}
	for {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx,
			&authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check the grant took effect: %w", err)
		}
		if sar.Status.Allowed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the authorizer still denies %+v: %w", spec, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
