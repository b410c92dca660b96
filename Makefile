.PHONY: test up controlplane

# Every check: vet + race tests for all modules, integration tests on the
# local control plane, benchmark smoke. See scripts/test.
test:
	./scripts/test

# A local control plane until Ctrl-C.
up:
	go run ./cmd/skiff up

# Build (or find the cached) skiff-controlplane and print its path.
controlplane:
	go run ./cmd/skiff build-controlplane
