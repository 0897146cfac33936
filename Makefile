# rtgate — build, test and run. `make test` installs what the tests need
# (.ci/install-deps, idempotent) and is what CI runs (.ci/run).

GO      ?= go
BIN     := bin/rtgate
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CONFIG  ?= deploy/rtgate.yaml

.PHONY: all build test deps vet cross lint run bench bench-micro release clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rtgate

deps:
	bash .ci/install-deps

vet:
	$(GO) vet ./...

# The camera box is ARM: every package, tests included, must compile for
# arm64 and 32-bit arm (vet type-checks the tests too).
cross:
	GOOS=linux GOARCH=arm64 $(GO) vet ./...
	GOOS=linux GOARCH=arm GOARM=7 $(GO) vet ./...
	@# The V4L2 struct layouts and ioctl numbers, checked on arm64 and arm
	@# themselves under qemu-user (.ci/install-deps installs it).
	@if command -v qemu-aarch64 >/dev/null && command -v qemu-arm >/dev/null; then \
	  set -x; \
	  GOOS=linux GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64 -run '^(TestLayout|TestIoctlNumbers)$$' ./bridge/v4l2/ && \
	  GOOS=linux GOARCH=arm GOARM=7 $(GO) test -count=1 -exec qemu-arm -run '^(TestLayout|TestIoctlNumbers)$$' ./bridge/v4l2/; \
	elif [ "$$CI" = true ]; then echo "qemu-user is required in CI"; exit 1; \
	else echo "qemu-user not installed: V4L2 layouts checked for $$(go env GOARCH) only"; fi

# Static binaries for the machines rtgate runs on: dist/rtgate-linux-*.
release:
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o dist/rtgate-linux-amd64 ./cmd/rtgate
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o dist/rtgate-linux-arm64 ./cmd/rtgate
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o dist/rtgate-linux-armv7 ./cmd/rtgate

# In order, also under -j; go test comes last so its ok/FAIL lines close the
# output.
test:
	bash .ci/install-deps
	$(GO) vet ./...
	$(MAKE) --no-print-directory cross release
	$(GO) test -count=1 -timeout 30m ./...

lint: vet
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The daemon on the embedded SFU with the bundled demo stream (deploy/demo:
# a 5 s VP8 test pattern and an Opus tone, looping) published as "demo".
# File URLs are absolute, so the stream is passed from this checkout's path.
DEMO_STREAMS := [{"name":"demo","sources":["file://$(CURDIR)/deploy/demo/demo.ivf?loop=true","file://$(CURDIR)/deploy/demo/demo.ogg?loop=true"]}]

# Once the stream is live, a background loop prints the /watch URL last; the
# daemon replaces the shell (exec), so $$$$ is its pid and Ctrl-C reaches it.
run: build
	@echo "rtgate: publishing the demo stream into the embedded SFU on http://127.0.0.1:8080"
	@echo "  see it:  curl -s http://127.0.0.1:8080/api/streams   (state live, packets and bitrate rising)"
	@echo "  stop:    Ctrl-C"
	@( for i in $$(seq 150); do \
	    kill -0 $$$$ 2>/dev/null || exit 0; \
	    if curl -sf http://127.0.0.1:8080/api/streams 2>/dev/null | grep -q '"state":"live"'; then \
	      printf '\n  ==> the demo stream is playing at  http://127.0.0.1:8080/watch/demo\n      (all streams: http://127.0.0.1:8080/   stop: Ctrl-C)\n\n'; exit 0; \
	    fi; sleep 0.2; \
	  done; \
	  echo "rtgate: the demo stream is not live after 30 s: see the log above" ) & \
	exec env RTGATE_STREAMS='$(DEMO_STREAMS)' ./$(BIN) run -c $(CONFIG)

# The figures docs/PERFORMANCE.md reports: `rtgate bench` runs the relay,
# idle, fan-out and record scenarios, each against a bare UDP floor and the
# plain pion loop measured in the same run, and whep-ttff (WHEP time to first
# frame in headless Chromium: it needs `make deps` for Chromium and the npm
# runner, else its browser rows say "not measured (no chromium)"), prints the
# tables and where rtgate stands against its targets, and writes
# bench-results/*.json and *.svg (about 2.5 minutes, whep-ttff 15-20 s of
# them). Its relay and fan-out scenarios supersede the Ingest and FanOut
# benchmarks; those and the component micro-benchmarks are bench-micro.
bench: build
	@start=$$(date +%s); ./$(BIN) bench --out bench-results; rc=$$?; \
	echo "make bench: $$(( $$(date +%s) - start )) s after the build"; exit $$rc

bench-micro:
	$(GO) test -run '^$$' -bench FanOut -benchmem -benchtime=2s ./gateway/sfu/
	$(GO) test -run '^$$' -bench Ingest -benchtime=1x ./gateway/publish/
	$(GO) test -run '^$$' -bench . -benchmem ./bridge/rtpudp/ ./gateway/peer/

clean:
	rm -rf bin/ dist/ bench-results/ coverage.out coverage.html *.coverprofile
