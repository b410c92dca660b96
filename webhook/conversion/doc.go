// Package conversion is a CRD conversion webhook with typed conversion
// functions: you name Go types, never groups, versions or kinds.
//
//	w, err := conversion.New[*v2.Boat](scheme, conversion.Options{Registerer: reg})
//	err = conversion.Spoke(w, v1ToV2, v2ToV1) // func(*v1.Boat, *v2.Boat) error, func(*v2.Boat, *v1.Boat) error
//	err = server.Handle("/convert/boats", w)   // any HTTPS server; the API server calls it
//	err = conversion.ConfigureCRD[*v2.Boat](ctx, c, conversion.ClientConfig{URL: url, CABundle: ca})
//
// # Hub and spoke
//
// One version of the kind is the hub (New's type parameter); every other
// version is a spoke with two functions, to the hub and from it. The API
// server may ask for any pair of versions; the webhook goes source → hub →
// desired. With n versions that is 2(n−1) functions instead of the n(n−1)
// of pairwise conversion, adding a version touches only its own pair, and a
// conversion between two old versions cannot be forgotten. The cost is two
// steps between two spokes; the hub should be the richest version (usually
// the newest), so nothing is lost in the middle. Spoke ties the types
// together at compile time: its functions must take H, the hub of the
// Webhook they are registered with.
//
// Group, version and kind come from the runtime.Scheme, which must know the
// hub and every spoke type (AddKnownTypes); all must be versions of one
// group and kind. One Webhook serves one CRD; mount one per CRD.
//
// # What the webhook guarantees
//
//   - It speaks apiextensions.k8s.io/v1 ConversionReview only (API servers
//     since 1.16 send it when the CRD lists "v1" in conversionReviewVersions,
//     as Stanza does); v1beta1 reviews get 400 saying so.
//   - A review may carry many objects of mixed versions: each is converted
//     from its own version; the answer keeps the request's order and sets
//     each output's apiVersion and kind. An object already at the desired
//     version is returned byte for byte.
//   - Metadata: before a conversion function runs, its destination holds a
//     deep copy of the source's metadata. Afterwards the webhook compares
//     the output's metadata with the input's: a conversion may add, change
//     or remove annotations (valid ones: that is where a field one version
//     lacks is kept, so round trips lose nothing), and nothing else. A
//     changed name, namespace, uid, labels, resourceVersion, finalizers,
//     owner references, timestamps or managed fields fails the review with
//     a message naming the field. (The API server itself rejects a changed
//     name, namespace or uid and silently restores all other metadata but
//     labels and annotations; the webhook is stricter about labels, because
//     an object's labels must not depend on the version it is read at.)
//   - Failures: an unknown desired version, an object of another kind or of
//     an unregistered version, an error from a conversion function and
//     refused metadata all answer 200 with a Failure result whose message
//     names the object ("object 2 of 5 (ns/name, group/v1 Boat): convert v1
//     to hub v2: ..."); the API server returns it to its client. The whole
//     review fails, as the API server requires.
//   - Bad requests: a method other than POST (405), a body that is not JSON,
//     not a ConversionReview, of another apiVersion, without a request uid
//     or larger than Options.MaxBodyBytes (400, plain text naming the
//     problem). A panic, in a conversion function or the webhook, answers
//     500 and is logged with its stack; the server keeps running.
//   - Metrics (Options.Registerer): skiff_conversion_requests_total{kind,
//     result} and skiff_conversion_request_duration_seconds{kind,result},
//     result one of success, failure, bad_request, panic; every series
//     exists at zero from New.
//
// # The CRD side
//
// Stanza builds the CRD's spec.conversion (strategy Webhook, a URL or
// Service client config, the caBundle, conversionReviewVersions ["v1"]);
// ConfigureCRD writes it into the installed CRD of a Go type, whose name
// ("<plural>.<group>") it resolves through the scheme and the server's
// discovery. The CRD needs structural schemas for every version and
// preserveUnknownFields false. The API server starts calling the webhook
// shortly after the CRD is updated, not at once: wait until a read at a
// non-storage version succeeds.
package conversion
