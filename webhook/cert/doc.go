// Package cert provides serving certificates for Skiff's webhook server:
// generated in-process and kept in a Secret (Secret), or read from files
// someone else rotates, such as cert-manager (Files). Both hot-reload:
// GetCertificate is called per TLS handshake and returns the newest pair,
// so a rotation never needs a restart.
//
//	src, err := cert.NewSecret(cert.SecretOptions{
//		Config: cfg, Namespace: "demo", Name: "demo-webhook-cert",
//		Hosts:                           cert.ServiceHosts("demo-webhook", "demo"),
//		ValidatingWebhookConfigurations: []string{"demo"},
//		CRDs:                            []string{"foos.demo.skiff.dev"},
//	})
//	go src.Run(ctx)   // on every replica; the webhook server uses src.GetCertificate
//
// # Keys
//
// ECDSA P-256 for CA and serving keys: every client the API server uses
// accepts it, signing and verifying are fast, keys are small. Ed25519 would
// do as well technically, but TLS stacks and tooling outside Go (older
// OpenSSL builds, FIPS modes, HSMs) do not all accept Ed25519 certificates.
// Defaults: CA 10 years, serving certificate 1 year (never past its CA),
// each replaced when less than 1/3 of its lifetime remains; NotBefore is
// backdated 5 minutes for clients whose clock runs behind.
//
// # The Secret
//
// One Secret of type kubernetes.io/tls holds everything, so every replica
// serves the same pair:
//
//	tls.crt, tls.key        the serving certificate and its key (PKCS#8 PEM)
//	ca.crt                  the CA bundle the API server must trust (the caBundle):
//	                        the signing CA first, during a CA rotation also the other CA
//	ca.key                  the key of the signing CA (the first certificate of ca.crt)
//	next-ca.crt, next-ca.key  during a CA rotation only: the published, not yet signing CA
//	annotation cert.skiff.dev/next-ca-published  when next-ca was published (RFC 3339)
//	annotation cert.skiff.dev/ca-switched        when the current CA started signing
//
// Every replica reads and writes it. The first to find it missing creates
// it; a replica whose Create fails with AlreadyExists reads and serves the
// winner's. Updates carry the resourceVersion read (optimistic
// concurrency); on Conflict the replica re-reads and decides again, usually
// finding the work done. Each replica watches the Secret and serves a new
// version moments after any replica writes it. A Secret of another type or
// with content that does not parse is never overwritten: Run returns an
// error naming the Secret and key (as it does when a request is forbidden).
//
// # Rotation without a failed admission
//
// The API server must trust whatever certificate any replica serves at
// any moment, through the caBundle of every webhook configuration. The
// protocol (decide in plan.go is all of it, as a pure function):
//
//  1. Serving certificate due: issue a new one under the same CA. The
//     bundle does not change, so old and new are both trusted while
//     replicas reload one by one.
//  2. CA due (less than RenewFraction of its life left): generate the next
//     CA and publish ca.crt = [current, next] with next-ca.*; the current
//     CA keeps signing.
//  3. Every replica injects the bundle into every named object. Once the
//     replica deciding has seen all of them carry it, it waits
//     PropagationGrace more (API servers load webhook configurations from
//     their own watch) and then switches: next becomes the signing CA, a
//     serving certificate signed by it is issued, ca.crt = [new, old].
//  4. After PropagationGrace more (replicas reload the new serving pair),
//     the old CA is dropped: ca.crt = [new].
//
// An object that does not exist yet (or a CRD without a conversion
// webhook) counts as carrying the bundle: nothing calls the webhook through
// it; when it appears it is patched with the current bundle (a webhook
// created without a caBundle fails its calls until then). If the signing CA has
// already expired (every replica was down for a long time), the protocol
// starts over with a new CA; admissions fail until the bundle propagates.
//
// # caBundle injection
//
// For every named ValidatingWebhookConfiguration and
// MutatingWebhookConfiguration, the caBundle of each of its webhooks; for
// every named CustomResourceDefinition, spec.conversion.webhook.clientConfig
// .caBundle. Only those fields are written, with a JSON patch that tests the
// resourceVersion read. A missing object is watched until it appears; an
// object whose caBundle someone else changes is patched back.
//
// # Files
//
// Files reads tls.crt, tls.key and optionally ca.crt from a directory (a
// mounted Secret), checks a hash of their content every Interval, and
// serves a new pair only when both files parse and the key matches, so a
// half-written update is never served.
package cert
