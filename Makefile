# The two commands of the README. Both work on a fresh machine with python3 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run function test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The run environment holds the service and the embedded database only: test tools stay out of it
# (they slow the cold start, see STACK-NOTES).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[embedded]' tox
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/hecate serve --dev --host 127.0.0.1 --port $${PORT:-8080}

# The Google Cloud Functions entry point (main.py, target hecate) under functions-framework, as
# the platform runs it. Settings from the environment, MONGODB_URL included (no embedded database
# here): e.g. `HECATE_DEV=true MONGODB_URL=mongodb://localhost:27017 make function`.
$(VENV)/.installed-gcp: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[gcp]'
	touch $@

function: $(VENV)/.installed-gcp
	$(BIN)/functions-framework --target hecate --source main.py --host 127.0.0.1 --port $${PORT:-8080}

# tox builds its own environment with the test extras and runs pytest against real servers
# (SecantusDB over TCP, uvicorn on free 127.0.0.1 ports, aiosmtpd, redis-server) that the suite
# starts itself; scripts/system-deps.sh installs the Debian packages it needs when missing.
test: install
	./scripts/system-deps.sh
	$(BIN)/tox -e py -- $(ARGS)

# Cold start, throughput, latency and memory against real servers it starts itself (SecantusDB,
# hecate serve, functions-framework, uvicorn with 1 and 2 workers); ≈ 3 minutes. Runs in the run
# environment plus the gcp extra, so the cold start is measured without test tools installed.
# The load generator is wrk (Debian), installed here when missing and we may.
bench: $(VENV)/.installed-gcp
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
	  echo "warning: wrk is missing (apt-get install wrk)"
	$(BIN)/python benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) .tox
