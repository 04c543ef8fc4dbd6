# dpsd developer tasks; `make help` lists them. CARGO and TEST_ARGS can be overridden:
#   make test TEST_ARGS='restart --nocapture'
CARGO ?= cargo
TEST_ARGS ?=
BENCH_ARGS ?=
# make chaos: messages per fault run, seconds per fuzz target, API-fuzz examples per operation
CHAOS_MESSAGES ?= 3000
FUZZ_SECONDS ?= 60
API_EXAMPLES ?= 500
# install locations; DESTDIR stages a package tree
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
BINARY ?= target/release/dpsd

.PHONY: help run test chaos bench services mongo install release clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: ## fmt check, clippy -D warnings, then all tests against real servers and headless Chromium
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	scripts/ensure-browser.sh
	scripts/test-services.sh $(CARGO) test --all-targets --no-fail-fast -- $(TEST_ARGS)
	DPSD=target/debug/dpsd tools/api-fuzz.sh

chaos: ## the long fault runs, fuzzing of the parsers and of the API (tens of minutes); report in target/chaos-report.md
	$(CARGO) build --bins
	@printf '| fault | messages | faults | missing or wrong | duplicate service calls | stages recorded twice | time |\n|---|---|---|---|---|---|---|\n' > target/chaos-report.md
	DPSD_CHAOS_MESSAGES=$(CHAOS_MESSAGES) DPSD_CHAOS_REPORT=$(CURDIR)/target/chaos-report.md \
	  scripts/test-services.sh $(CARGO) test --test chaos -- --test-threads 1 --nocapture
	tools/fuzz.sh $(FUZZ_SECONDS)
	DPSD=target/debug/dpsd tools/api-fuzz.sh --examples $(API_EXAMPLES)
	@cat target/chaos-report.md

run: release services ## the daemon with the shipped example chain on the embedded store (starts RabbitMQ if needed)
	$(BINARY) --config etc/dpsd.yaml run

bench: ## the chain against a bare amqprs relay, embedded and MongoDB-wire, and the embedded store alone; writes docs/BENCHMARKS.md (BENCH_ARGS='--n 20000')
	$(CARGO) build --release --bins --examples
	DPSD_TEST_RESTARTABLE_AMQP_URL= scripts/test-services.sh $$(scripts/secantus-venv.sh) tools/bench.py $(BENCH_ARGS)

services: ## make sure RabbitMQ answers on 127.0.0.1:5672 (installing it when missing)
	scripts/ensure-rabbitmq.sh

mongo: ## a local MongoDB-wire server on 127.0.0.1:27017 (mongod, else SecantusDB), to try the MongoDB store
	scripts/ensure-mongo.sh

release: ## build the optimised binary
	$(CARGO) build --release

target/release/dpsd:
	$(CARGO) build --release

install: $(BINARY) ## binary, systemd unit and an /etc/dpsd tree (PREFIX, DESTDIR honoured; config kept if present)
	scripts/install.sh "$(BINARY)" "$(DESTDIR)" "$(PREFIX)" "$(SYSCONFDIR)" "$(UNITDIR)"

clean: ## cargo clean, and remove .venv/ and target/test-*
	$(CARGO) clean
	rm -rf .venv target/test-*
