# Every target bootstraps .venv itself: a fresh clone needs only Python 3.11 and `make`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: nginx venv run test test-unit test-e2e demo bench bench-quick lint typecheck clean screenshots run-cluster

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## Start the translation server (:8000) and the callback receiver (:8001) in the foreground.
run: $(STAMP)
	$(BIN)/python scripts/run_local.py $(ARGS)

DEMO_LOG := -o log_cli=true -o log_cli_level=INFO -o log_cli_format="%(asctime)s %(name)-18s %(message)s"

## Debian's chromium for the browser tests (Playwright drives it; it cannot download its own).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "chromium is missing: installing Debian's package (apt-get install -y -q chromium)"
	apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

## Debian's nginx, for the tested reverse-proxy snippet (deploy/nginx/) and anything that fronts
## the services with it; `make nginx` installs it alone.
NGINX := /usr/sbin/nginx
$(NGINX):
	@echo "nginx is missing: installing Debian's package (apt-get install -y -q nginx-light)"
	apt-get install -y -q nginx-light || (apt-get update -q && apt-get install -y -q nginx-light)

nginx: $(NGINX)

## Debian's openssl: its command line makes the certificate of the https webhook test.
OPENSSL := /usr/bin/openssl
$(OPENSSL):
	@echo "openssl is missing: installing Debian's package (apt-get install -y -q openssl)"
	apt-get install -y -q openssl || (apt-get update -q && apt-get install -y -q openssl)

## Two servers (:8000) and two receivers (:8001) on the local PostgreSQL, behind nginx;
## arguments after -- go to every server (ARGS="-- --workers 8"). docs/scaling.md says more.
run-cluster: $(STAMP) $(NGINX)
	$(BIN)/python scripts/run_cluster.py $(ARGS)

## The end-to-end demo first, with its story logged live, then the rest of the suite.
test: $(STAMP) $(CHROMIUM) $(NGINX) $(OPENSSL)
	$(BIN)/python -m pytest tests/e2e/test_demo.py $(DEMO_LOG)
	$(BIN)/python -m pytest tests --ignore=tests/e2e/test_demo.py -q

## The end-to-end demo alone, verbosely (ARGS="--demo-server http://127.0.0.1:8000" for make run's).
demo: $(STAMP)
	$(BIN)/python -m pytest tests/e2e/test_demo.py $(DEMO_LOG) -v $(ARGS)

test-unit: $(STAMP) $(OPENSSL)
	$(BIN)/python -m pytest tests/unit

test-e2e: $(STAMP) $(CHROMIUM) $(NGINX)
	$(BIN)/python -m pytest tests/e2e

## Benchmarks (minutes): every one, then docs/benchmarks.md and the README's results; QUICK=1
## (or bench-quick) runs each smaller. wrk from Debian's packages when it can be installed,
## else a Python load generator.
bench: $(STAMP) $(CHROMIUM)
	command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null 2>&1 || \
		echo "wrk not available: the Python load generator will be used"
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m scripts.bench $(if $(QUICK),--quick)

bench-quick:
	$(MAKE) bench QUICK=1

## PNGs of the dashboard and the receiver's page (desktop and phone width) in docs/screenshots/,
## and the dashboard's measured figures in docs/dashboard.md.
screenshots: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m scripts.screenshots

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy translation_server callback_receiver client_lib service_common

clean:
	rm -rf $(VENV) var *.egg-info
