package conversion_test

import (
	"fmt"
	"net/http/httptest"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffkit/skiff/webhook/conversion"
	"github.com/skiffkit/skiff/webhook/conversion/internal/boat"
)

// A Boat has two versions: v1 with spec.size, and v2 (the hub) with
// spec.replicas and spec.tier, which v1 keeps in an annotation.
func Example() {
	scheme := runtime.NewScheme()
	if err := boat.AddToScheme(scheme); err != nil {
		panic(err)
	}
	w, err := conversion.New[*boat.V2](scheme, conversion.Options{})
	if err != nil {
		panic(err)
	}
	err = conversion.Spoke(w,
		func(src *boat.V1, dst *boat.V2) error { // up to the hub; dst has src's metadata already
			dst.Spec.Replicas = src.Spec.Size
			dst.Spec.Tier = dst.Annotations[boat.TierAnnotation]
			delete(dst.Annotations, boat.TierAnnotation)
			return nil
		},
		func(src *boat.V2, dst *boat.V1) error { // down from the hub
			dst.Spec.Size = src.Spec.Replicas
			if src.Spec.Tier != "" {
				if dst.Annotations == nil {
					dst.Annotations = map[string]string{}
				}
				dst.Annotations[boat.TierAnnotation] = src.Spec.Tier
			}
			return nil
		})
	if err != nil {
		panic(err)
	}

	// The API server POSTs a ConversionReview; w is an http.Handler.
	review := `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{
		"uid":"0b1c","desiredAPIVersion":"conversion.test.skiff.dev/v1","objects":[
		{"apiVersion":"conversion.test.skiff.dev/v2","kind":"Boat","metadata":{"name":"skiff","namespace":"harbor"},
		 "spec":{"replicas":3,"tier":"gold"}}]}}`
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("POST", "/convert", strings.NewReader(review)))
	fmt.Println(rec.Code)
	fmt.Println(strings.ReplaceAll(rec.Body.String(), ",", ",\n"))

	// The CRD's conversion stanza, for a Service in the cluster.
	stanza, err := conversion.Stanza(conversion.ClientConfig{Service: &conversion.Service{Namespace: "boats-system", Name: "webhooks", Path: "/convert"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(stanza["strategy"], stanza["webhook"].(map[string]any)["conversionReviewVersions"])
	// Output:
	// 200
	// {"apiVersion":"apiextensions.k8s.io/v1",
	// "kind":"ConversionReview",
	// "response":{"uid":"0b1c",
	// "convertedObjects":[{"kind":"Boat",
	// "apiVersion":"conversion.test.skiff.dev/v1",
	// "metadata":{"name":"skiff",
	// "namespace":"harbor",
	// "annotations":{"conversion.test.skiff.dev/tier":"gold"}},
	// "spec":{"size":3}}],
	// "result":{"metadata":{},
	// "status":"Success"}}}
	// Webhook [v1]
}
