# Causeway: the two commands a new user needs are `make demo` and `make test`.
CARGO ?= cargo
export CAUSEWAY_BIN ?= $(CURDIR)/target/debug/causeway

.PHONY: all build demo test unit lint bench profile release clean drivers classifier-check fuzz soak ryw-check

all: build

build:
	$(CARGO) build --workspace --bins

# A local primary + 2 streaming replicas with Causeway in front; Ctrl-C stops.
# `make demo TLS=1`: TLS on both sides, a verify-full connection string.
demo: build
	./target/debug/causeway-demo $(if $(TLS),--tls)

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
	python3 tools/shape-check.py
	bash tools/check-sleeps.sh

release:
	$(CARGO) build --release -p causeway

# The read-your-writes checker at full size (the figures in
# docs/consistency.md): 50 sessions x 2,000 write-then-read loops per run,
# synchronous_commit on and off, healthy replicas and chaos, consistency
# session and none. RYW_CHECK_ARGS narrows it, e.g. "--sync on --scenario healthy".
ryw-check: release
	$(CARGO) build --release -p causeway-integration --bin causeway-ryw-check
	CAUSEWAY_BIN=$(CURDIR)/target/release/causeway ./target/release/causeway-ryw-check $(RYW_CHECK_ARGS)

# Causeway vs PgBouncer vs direct PostgreSQL, same machine, same run (~11 min).
# Knobs, as environment or make variables (see bench/README.md): BENCH_SECONDS,
# BENCH_REPEAT=2, BENCH_ROWS="select tls idle workers tpcb waiters clients10k",
# PGBOUNCER=/path, MANY_CLIENTS, WAITERS.
bench: release
	CAUSEWAY_BIN=$(CURDIR)/target/release/causeway bash bench/run.sh

# Instructions (callgrind) and syscalls (perf) per transaction, PgBouncer
# beside Causeway (needs valgrind; see bench/README.md "Profile").
profile: release
	CAUSEWAY_BIN=$(CURDIR)/target/release/causeway bash bench/profile.sh

clean:
	$(CARGO) clean
	rm -rf .demo bench/out $(DRIVERS)/python/.venv $(DRIVERS)/node/node_modules

# The SQL classifier against PostgreSQL's own parser (libpg_query via the
# pg_query crate; needs clang/libclang): PostgreSQL 15's regression SQL
# (committed, tools/classifier-check/pg15-regress-sql.tar.gz) and generated
# statements. Fails on any statement classified a replica read that the
# parse tree shows is not one. Its own cargo workspace: `make test` never
# builds libpg_query.
CHECK_DIR := target/classifier-check
classifier-check:
	mkdir -p $(CHECK_DIR)
	tar xzf tools/classifier-check/pg15-regress-sql.tar.gz -C $(CHECK_DIR)
	cd tools/classifier-check && CARGO_TARGET_DIR=$(CURDIR)/$(CHECK_DIR) $(CARGO) run --release --locked -- $(CURDIR)/$(CHECK_DIR)/sql

# cargo-fuzz targets (fuzz/): each for FUZZ_SECONDS on its committed corpus.
# Not part of make test. Results: docs/fuzzing.md.
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

# ~30 minutes of mixed load with chaos (replica kill/restart, replay pause,
# apply delay, SIGHUP, client churn, a promotion) against a release build;
# CSV, plot and summary in bench/soak/. Not in CI. SOAK_SECONDS shortens it.
soak: release
	command -v gnuplot >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends gnuplot-nox
	$(CARGO) build -p causeway-integration --bin causeway-soak
	CAUSEWAY_BIN=$(CURDIR)/target/release/causeway ./target/debug/causeway-soak
