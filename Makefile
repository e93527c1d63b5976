# bootfleet: `make run` starts everything locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Two stamps in one virtualenv: `make run` installs what running needs (.[local]), `make test` adds the
# test tools (.[local,test]: Playwright, moto, schemathesis, ...) the first time it runs.
RUN_STAMP  = $(VENV)/.installed-run
STAMP      = $(VENV)/.installed

.PHONY: run test bench bench-cold bench-dns bench-cleanup bench-import bench-fleet demo clean

# checkov (tests/infra/test_infra_terraform.py) has its own virtualenv: in .venv it would downgrade boto3.
CHECKOV = .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --upgrade pip
	.venv-checkov/bin/pip install --quiet 'checkov>=3.2,<4'

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $(RUN_STAMP) $(STAMP)

# make run PORT=8091, make demo PORT=8091: another port; BOOTFLEET_DATA_DIR=...: another data directory.
PORT ?= 8080
BOOTFLEET_DATA_DIR ?= .data

## run: set up and start the whole system on http://127.0.0.1:$(PORT) (embedded PostgreSQL), with the demo
## profile's kernel and initramfs (the e2e node image, built once into ~/.cache/bootfleet/e2e), and the
## bootfleet agent for image profiles (images/bootfleet-agent/: the cloud kernel, for local VMs; docs/images.md)
run: $(RUN_STAMP)
	@$(BIN)/python tests/e2e/node_image.py --out $(BOOTFLEET_DATA_DIR)/images \
	  || echo "make run: no demo images (see above); the demo profile will not boot until you upload some"
	@$(BIN)/bootfleet images build-agent --no-upload --kernel-package linux-image-cloud-amd64 \
	  --out $(BOOTFLEET_DATA_DIR)/images/bootfleet-agent \
	  || echo "make run: no bootfleet agent (see above); image profiles will not boot until you build it"
	BOOTFLEET_DATA_DIR=$(BOOTFLEET_DATA_DIR) $(BIN)/bootfleet serve --port $(PORT)

## test: the whole test suite (starts its own PostgreSQL)
test: $(STAMP) $(CHECKOV)
	$(BIN)/python -m pytest

## bench: the boot storm with wrk against a server it starts, beside a functions-framework hello world and the floor (bench/floor; docs/benchmarks.md)
bench: $(STAMP)
	$(BIN)/python bench/boot_storm.py --start-server

## bench-cold: each function's cold start and memory against the hello world's; what the metrics cost a request
bench-cold: $(STAMP)
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/metrics_cost.py

## bench-dns, bench-cleanup: 10,000 DNS records reconciled; one cleanup run over 100,000 nodes
bench-dns: $(STAMP)
	$(BIN)/python bench/dns_reconcile.py --records 10000 --changes 100

bench-cleanup: $(STAMP)
	$(BIN)/python bench/cleanup_sweep.py --nodes 100000

## bench-import: bootfleet node import of 9,000 nodes (all or nothing)
bench-import: $(STAMP)
	$(BIN)/python bench/node_import.py --nodes 9000

## bench-fleet: 10,000 simulated nodes through a real node's whole life (chainloader to ready) through the router,
## 100 at once: nodes a minute, CPU per node, each step's p50/p99, every node ready with one event per stage
bench-fleet: $(STAMP)
	$(BIN)/python bench/fleet.py --nodes 10000 --concurrency 100

## demo: 3 QEMU VMs network-boot the local system with iPXE; watch them reach ready (docs/e2e.md)
demo: $(STAMP)
	$(BIN)/python tests/e2e/demo.py --port $(PORT)

clean:
	rm -rf $(VENV) .venv-checkov .data .pytest_cache
