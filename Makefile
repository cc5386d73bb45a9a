# Pushfleet — the commands a developer (and CI) runs.
CARGO ?= cargo
# nextest when installed, plain cargo test otherwise.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: run fleet test js-test k8s-check fuzz bench bench-quick bench-peers lint build fmt clean

## run: build and start one gateway on the embedded bus (Ctrl-C stops it).
run:
	$(CARGO) run -p gateway --bin gateway -- $(ARGS)

## fleet: a local fleet: redis-server on a free port + two gateways (Ctrl-C stops it).
fleet:
	./scripts/fleet.sh

## build: every binary (gateway, pushctl) in debug mode.
build:
	$(CARGO) build --workspace --bins

## test: lint, the browser client's unit tests, then every Rust unit and integration test
## (integration tests start real gateways, redis-server and headless Chromium).
test: lint build js-test k8s-check
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

## js-test: unit tests of the browser client (node --test).
js-test:
	cd clients/js && node --test test/

## k8s-check: Dockerfile sanity, helm lint --strict, renders of the chart and k8s/,
## all validated offline against several Kubernetes versions' schemas.
k8s-check:
	python3 scripts/dockerfile_check.py
	./scripts/k8s-check.sh

## bench: the standard scenarios (15k connections; several minutes), the same load on
## Socket.IO + Redis adapter and a plain Node ws broadcaster (bench/node, installed with
## npm ci), and the criterion micro-benchmarks; writes
## bench/results/<timestamp>-full.{json,md} and SVG plots.
bench: bench-peers
	$(CARGO) build --release --workspace --bins
	./target/release/bench run --size full --out bench/results
	$(CARGO) bench -p gateway --bench hot_path -- --warm-up-time 1 --measurement-time 3
	# `cargo bench` leaves its own build at target/release/gateway (tokio's test-util on,
	# from the dev-dependencies): put the release build back for the runs that follow.
	$(CARGO) build --release --workspace --bins

## bench-quick: small versions of the scenarios, about a minute.
bench-quick: bench-peers
	$(CARGO) build --release --workspace --bins
	./target/release/bench run --size quick --out bench/results

# The peers' Node dependencies, pinned by bench/node/package-lock.json.
bench-peers:
	test -d bench/node/node_modules || npm ci --prefix bench/node --no-audit --no-fund

## fuzz: a long property-based fuzzing run of every untrusted-input decoder.
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-200000} $(CARGO) test --release -p gateway --test fuzz

## lint: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
