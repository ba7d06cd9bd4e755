# The two commands of the README:
#   make demo   set everything up, then run the pilot end to end
#   make test   set everything up, then run the test suite
# Everything else here is what those two need: Debian packages, a virtual
# environment, tapstack installed into it.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pcscd + the virtual reader driver for the real PC/SC path, and libccid for USB
# readers; swig, a compiler and libpcsclite-dev to build pyscard (no Linux wheel);
# wrk for the HTTP benchmark; chromium for the browser tests (driven by playwright's
# client, never its own browser download); iso-codes, which the currency table is
# checked against; PostgreSQL, the gateway's second backend (the tests start their own
# cluster with initdb and pg_ctl; no system service is needed); haproxy for the
# scale-out example (examples/scale_out.py).
DEBIAN_PACKAGES := pcscd pcsc-tools vsmartcard-vpcd libccid swig libpcsclite-dev pkg-config gcc wrk chromium fonts-liberation iso-codes postgresql haproxy

.PHONY: setup system venv demo test bench clean

setup: system venv

system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if ! $(PYTHON) -c 'import ensurepip, sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then \
	  missing="$$missing python3-venv python3-dev"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,test]'
	@touch $@

demo: setup
	$(BIN)/tapstack demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	@failed=""; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "missed their bar or failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) .tapstack .pytest_cache .hypothesis test-artifacts
