# Portico developer / CI entry points.  `make test` is what CI runs (.ci/run).

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
INTEROP_PORTICO_BIN ?= $(CARGO_TARGET_DIR)/release/portico
INTEROP_BROKER ?= portico
VENV_PY := interop-tests/.venv/bin/python
PYTEST_TIMEOUT ?= 60
PYTEST_ARGS ?=

export INTEROP_PORTICO_BIN INTEROP_BROKER

.PHONY: run test deps check unit interop bench

run:
	$(CARGO) run --release -p portico -- start --config etc/portico.toml

test: deps check unit interop

deps:
	scripts/install-test-deps.sh

# Benchmarks are built, never timed, here (docs/benchmarks.md has the measurements).
check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) bench --workspace --no-run

# The database backend tests need PostgreSQL, MariaDB and Redis: scripts/test-services.sh starts
# them on loopback (a few seconds the first time, well under one after), and stops them after.
unit:
	@services="$$(scripts/test-services.sh start)" || exit 1; eval "$$services"; \
	if command -v cargo-nextest >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --workspace"; \
		$(CARGO) nextest run --workspace; status=$$?; \
	else \
		echo "cargo-nextest not found; falling back to cargo test"; \
		$(CARGO) test --workspace; status=$$?; \
	fi; \
	scripts/test-services.sh stop; exit $$status

# Interop suite: builds the broker (unless INTEROP_BROKER=mosquitto) and runs
# pytest against it.  Any failing test fails the target.
interop:
	@test -x $(VENV_PY) || { echo "missing $(VENV_PY): run 'make deps' first"; exit 1; }
	@if [ "$(INTEROP_BROKER)" = "portico" ]; then \
		echo "$(CARGO) build --release -p portico"; \
		$(CARGO) build --release -p portico; \
	fi
	@# test_lwm2m.py's test device (found under CARGO_TARGET_DIR, or next to INTEROP_PORTICO_BIN).
	$(CARGO) build --release -p portico-lwm2m --example lwm2m-device
	$(VENV_PY) -m pytest interop-tests -q -p no:cacheprovider --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

# Side-by-side benchmark against Mosquitto and rumqttd (builds, installs the peers, ~30-40 min).
# Writes docs/benchmarks.md (between markers) and docs/bench/. Smoke check: see bench/README.md.
bench:
	python3 bench/runner/side_by_side.py
