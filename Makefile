# edigw — make targets. `make test` is the test command CI runs (README.md).
GO ?= go
export CGO_ENABLED ?= 0

.PHONY: build test run lint fuzz vet
build:
	$(GO) build -o bin/edigw ./cmd/edigw

# test: what CI runs. scripts/test-deps.sh installs or starts the real peers
# the tests talk to (OpenSSH, vsftpd, chromium, versitygw, PostgreSQL).
test:
	bash scripts/test-deps.sh
	gofmt -l . | tee /dev/stderr | (! read -r _)
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) run ./cmd/edigw partners lint deploy/examples/partners
	$(GO) run ./cmd/edigw partners test deploy/examples/partners

# run: the whole gateway on embedded defaults (SFTP :2022, ERP sink 127.0.0.1:9090, ./data)
run: build
	bin/edigw serve

vet:
	$(GO) vet ./...

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# fuzz: each target for FUZZTIME (default 60s); the seed corpora live in
# edi/testdata/fuzz (and mapping/) and run as ordinary tests in `make test`.
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./edi -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./edi -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZTIME)
	$(GO) test ./edi -run '^$$' -fuzz '^FuzzAck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./mapping -run '^$$' -fuzz '^FuzzMarshal$$' -fuzztime $(FUZZTIME)

-include mk/bench.mk
