# Causeway: the two commands a new user needs are `make demo` and `make test`.
CARGO ?= cargo
export CAUSEWAY_BIN ?= $(CURDIR)/target/debug/causeway

.PHONY: all build demo test unit lint bench release clean drivers ryw-check

all: build

build:
	$(CARGO) build --workspace --bins

# A local primary + 2 streaming replicas with Causeway in front; Ctrl-C stops.
demo: build
	./target/debug/causeway-demo

# Every test: unit tests beside the code and integration tests against a real
# PostgreSQL primary with streaming replicas.
test: build drivers
	$(CARGO) test --workspace --no-fail-fast

# Pinned real drivers for integration/tests/drivers.rs: asyncpg and psycopg 3
# in a venv, node-postgres and Sequelize from the committed lockfile.
PYTHON ?= python3
DRIVERS := integration/drivers
drivers: $(DRIVERS)/python/.venv/.installed $(DRIVERS)/node/node_modules/.causeway-lock

$(DRIVERS)/python/.venv/.installed: $(DRIVERS)/python/requirements.txt
	$(PYTHON) -m venv $(DRIVERS)/python/.venv
	$(DRIVERS)/python/.venv/bin/python -m pip install -q -r $<
	cp $< $@

$(DRIVERS)/node/node_modules/.causeway-lock: $(DRIVERS)/node/package-lock.json
	cd $(DRIVERS)/node && npm ci --no-audit --no-fund
	cp $< $@

unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

release:
	$(CARGO) build --release -p causeway

# The read-your-writes checker at full size (the figures in
# docs/consistency.md): 50 sessions x 2,000 write-then-read loops per run,
# synchronous_commit on and off, healthy replicas and chaos, consistency
# session and none. RYW_CHECK_ARGS narrows it, e.g. "--sync on --scenario healthy".
ryw-check: release
	$(CARGO) build --release -p causeway-integration --bin causeway-ryw-check
	CAUSEWAY_BIN=$(CURDIR)/target/release/causeway ./target/release/causeway-ryw-check $(RYW_CHECK_ARGS)

# Causeway vs PgBouncer vs direct PostgreSQL, same machine, same run.
bench: release
	CAUSEWAY_BIN=$(CURDIR)/target/release/causeway bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf .demo bench/out $(DRIVERS)/python/.venv $(DRIVERS)/node/node_modules
