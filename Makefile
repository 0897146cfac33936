# rtgate — build, test and run. `make test` installs what the tests need
# (.ci/install-deps, idempotent) and is what CI runs (.ci/run).

GO      ?= go
BIN     := bin/rtgate
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CONFIG  ?= deploy/rtgate.yaml

.PHONY: all build test deps vet lint run bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rtgate

deps:
	bash .ci/install-deps

vet:
	$(GO) vet ./...

# In order, also under -j; go test comes last so its ok/FAIL lines close the
# output.
test:
	bash .ci/install-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

lint: vet
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

run: build
	./$(BIN) run -c $(CONFIG)

# Placeholder until there are benchmarks across packages.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./gateway/sfu/

clean:
	rm -rf bin/ coverage.out coverage.html *.coverprofile
