package testenv_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/testenv"
)

func userClient(t *testing.T, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	cfg, err := shared.UserConfig(user, groups...)
	if err != nil {
		t.Fatalf("UserConfig(%q, %q): %v", user, groups, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestUserConfigAuthenticatesAsUserAndGroups(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	for _, tc := range []struct {
		user   string
		groups []string
	}{
		{"alice", nil},
		{"bob@example.com", []string{"devs", "oncall"}},
	} {
		cs := userClient(t, tc.user, tc.groups...)
		// Any authenticated user may ask who it is, so this works before any grant.
		r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: SelfSubjectReview: %v", tc.user, err)
		}
		got := r.Status.UserInfo
		// Group order is not kept (DER sorts a certificate's O values).
		want := slices.Sorted(slices.Values(append(slices.Clone(tc.groups), "system:authenticated")))
		if got.Username != tc.user || !slices.Equal(slices.Sorted(slices.Values(got.Groups)), want) {
			t.Errorf("authenticated as %q in %q, want %q in %q", got.Username, got.Groups, tc.user, want)
		}
	}
}

func TestUserConfigIsNotAdmin(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	admin, err := kubernetes.NewForConfig(shared.Config())
	if err != nil {
		t.Fatal(err)
	}
	r, err := admin.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Status.UserInfo.Groups, "system:masters") {
		t.Fatalf("admin groups %q lack system:masters; the test below proves nothing", r.Status.UserInfo.Groups)
	}
	ns := testenv.Namespace(t, shared.Config())
	_, err = userClient(t, "carol", "devs").CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list configmaps as an ungranted user: err = %v, want Forbidden", err)
	}
}

func TestGrantAllowsThenRevokeDenies(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	ns := testenv.Namespace(t, shared.Config())
	cs := userClient(t, "dave")
	list := func() error {
		_, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		return err
	}
	if err := list(); !apierrors.IsForbidden(err) {
		t.Fatalf("list before Grant: err = %v, want Forbidden", err)
	}
	revoke, err := testenv.Grant(ctx, shared.Config(), "dave", []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list", "get"}},
	})
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	// Grant waits until the authorizer allows it: no polling here.
	if err := list(); err != nil {
		t.Fatalf("list right after Grant: %v", err)
	}
	// The grant is what it says: list yes, create no; another user no.
	_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "made-by-dave"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("create with only list/get granted: err = %v, want Forbidden", err)
	}
	if _, err := userClient(t, "erin").CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list as another user: err = %v, want Forbidden", err)
	}
	if err := revoke(ctx); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// Revocation is seen by the authorizer's informer a moment later.
	for {
		err := list()
		if apierrors.IsForbidden(err) {
			break
		}
		if err != nil {
			t.Fatalf("list after revoke: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("list still allowed a minute after revoke")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := revoke(ctx); err != nil {
		t.Errorf("second revoke: %v, want nil (already gone)", err)
	}
}

func TestUserConfigBadInput(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	for _, tc := range []struct {
		name   string
		user   string
		groups []string
		want   string
	}{
		{"empty user", "", nil, "user name is empty"},
		{"empty group", "frank", []string{"devs", ""}, `("frank"): group 1 is empty`},
	} {
		cfg, err := shared.UserConfig(tc.user, tc.groups...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: UserConfig = %v, %v; want an error containing %q", tc.name, cfg, err, tc.want)
		}
	}
	if _, err := testenv.Grant(ctx, shared.Config(), "", []rbacv1.PolicyRule{{Verbs: []string{"get"}, Resources: []string{"pods"}}}); err == nil || !strings.Contains(err.Error(), "user name is empty") {
		t.Errorf("Grant to an empty user: err = %v, want one saying the user name is empty", err)
	}
	if _, err := testenv.Grant(ctx, shared.Config(), "frank", nil); err == nil || !strings.Contains(err.Error(), "no rules") {
		t.Errorf("Grant with no rules: err = %v, want one saying there are no rules", err)
	}
}
