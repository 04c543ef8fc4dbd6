# dpsd developer tasks; `make help` lists them. CARGO and TEST_ARGS can be overridden:
#   make test TEST_ARGS='restart --nocapture'
CARGO ?= cargo
TEST_ARGS ?=

.PHONY: help test services clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: ## fmt check, clippy -D warnings, then all tests against real servers
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	scripts/test-services.sh $(CARGO) test --all-targets --no-fail-fast -- $(TEST_ARGS)

services: ## make sure the shared RabbitMQ broker answers on 127.0.0.1:5672
	scripts/ensure-rabbitmq.sh

clean: ## cargo clean, and remove .venv/ and target/test-*
	$(CARGO) clean
	rm -rf .venv target/test-*
