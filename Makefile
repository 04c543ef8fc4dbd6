# dpsd developer tasks; `make help` lists them. CARGO and TEST_ARGS can be overridden:
#   make test TEST_ARGS='restart --nocapture'
CARGO ?= cargo
TEST_ARGS ?=
BENCH_ARGS ?=
# make chaos: messages per fault run, seconds per fuzz target, API-fuzz examples per operation
CHAOS_MESSAGES ?= 3000
FUZZ_SECONDS ?= 60
# make chaos: seconds of the soak run (make test runs 40)
SOAK_SECONDS ?= 600
API_EXAMPLES ?= 500
# make test's API fuzz replays one seed (a CI run must not fail on a case no earlier run drew);
# make chaos draws a new one each run.
API_FUZZ_SEED ?= 1
# install locations; DESTDIR stages a package tree
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
# the binaries wherever cargo puts them (CARGO_TARGET_DIR or a cargo config's target-dir
# honoured): scripts/binary-path.sh asks cargo; expanded only by the recipes that use them
binary = $(or $(shell CARGO='$(CARGO)' scripts/binary-path.sh $(1)),$(error scripts/binary-path.sh $(1) failed))
BINARY ?= $(call binary,release)
# where make chaos writes its report (a project folder, not cargo's)
CHAOS_REPORT ?= target/chaos-report.md
# the scripts and tools ask the same cargo
export CARGO

.PHONY: help run test chaos bench services mongo install release image clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: ## fmt check, clippy -D warnings, the fuzz targets compile, then all tests against real servers, headless Chromium and Docker (the image)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) check --quiet --manifest-path fuzz/Cargo.toml --bins
	scripts/ensure-browser.sh
	@rm -rf target/test-skips
	DPSD_TEST_PROMTOOL=$$(scripts/ensure-promtool.sh) \
	  scripts/test-services.sh $(CARGO) test --all-targets --no-fail-fast -- $(TEST_ARGS)
	DPSD=$(call binary,debug) tools/api-fuzz.sh --seed $(API_FUZZ_SEED)
	@if [ -n "$$(ls -A target/test-skips 2>/dev/null)" ]; then \
	  echo "make test: passed, but SKIPPED:"; cat target/test-skips/*; fi

chaos: ## the long fault runs, a ten-minute soak (SOAK_SECONDS), fuzzing of the parsers and of the API (tens of minutes); report in target/chaos-report.md (CHAOS_REPORT)
	$(CARGO) build --bins
	@mkdir -p $(dir $(CHAOS_REPORT))
	@printf '| fault | messages | faults | missing or wrong | duplicate service calls | stages recorded twice | time |\n|---|---|---|---|---|---|---|\n' > $(CHAOS_REPORT)
	DPSD_CHAOS_MESSAGES=$(CHAOS_MESSAGES) DPSD_CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) \
	  scripts/test-services.sh $(CARGO) test --test chaos -- --test-threads 1 --nocapture
	DPSD_SOAK_SECONDS=$(SOAK_SECONDS) DPSD_SOAK_REPORT=$(abspath $(dir $(CHAOS_REPORT)))/soak-report.md \
	  scripts/test-services.sh $(CARGO) test --test soak -- --nocapture
	tools/fuzz.sh $(FUZZ_SECONDS)
	DPSD=$(call binary,debug) tools/api-fuzz.sh --examples $(API_EXAMPLES)
	@cat $(CHAOS_REPORT)

run: release services ## the daemon with the shipped example chain on the embedded store (starts RabbitMQ if needed)
	$(BINARY) --config etc/dpsd.yaml run

bench: ## the chain against a bare amqprs relay, embedded and MongoDB-wire, and the embedded store alone; writes docs/BENCHMARKS.md (BENCH_ARGS='--n 20000', or '--only retention' to print one group)
	$(CARGO) build --release --bins --examples
	DPSD_TEST_RESTARTABLE_AMQP_URL= DPSD_TEST_TLS_AMQP_URL= DPSD_TEST_CLUSTER_URLS= \
	  scripts/test-services.sh $$(scripts/secantus-venv.sh) tools/bench.py $(BENCH_ARGS)

services: ## make sure RabbitMQ answers on 127.0.0.1:5672 (installing it when missing)
	scripts/ensure-rabbitmq.sh

mongo: ## a local MongoDB-wire server on 127.0.0.1:27017 (mongod, else SecantusDB), to try the MongoDB store
	scripts/ensure-mongo.sh

image: ## the image dpsd:VERSION and dpsd:latest from the Dockerfile (installs and starts Docker when missing; makes the base image from Debian's packages when no registry answers)
	scripts/image.sh

release: ## build the optimised binary
	$(CARGO) build --release

install: ## binary, systemd unit and an /etc/dpsd tree (PREFIX, DESTDIR honoured; config kept if present)
	@test -e "$(BINARY)" || $(CARGO) build --release
	scripts/install.sh "$(BINARY)" "$(DESTDIR)" "$(PREFIX)" "$(SYSCONFDIR)" "$(UNITDIR)"

clean: ## cargo clean, and remove .venv/ and target/test-*
	$(CARGO) clean
	rm -rf .venv target/test-*
