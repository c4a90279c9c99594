# mixedrun.kong: one entry point for people and CI.
#   make demo   - start the lab, bind a mixed service, shift traffic VM -> containers, show it, stop the lab
#   make test   - everything: unit, lab, sanity, lint, integration, molecule, end-to-end
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(abspath .)
PYTHON      ?= python3
VENV        := $(ROOT)/.venv
BIN         := $(VENV)/bin
TMP         := $(ROOT)/.tmp
COLL_ROOT   := $(TMP)/collections
COLL_LINK   := $(COLL_ROOT)/ansible_collections/mixedrun/kong
# Outside the git work tree: ansible-test lists files through git when it finds a repository around them.
ROOT_HASH   := $(shell printf %s "$(ROOT)" | md5sum | cut -c1-8)
SANITY_ROOT := /tmp/mixedrun-kong-$(ROOT_HASH)/ansible_collections/mixedrun/kong
TEST_LAB    := $(TMP)/lab-test
# Real Kong 3.9.3 from the kit beside the project (built once into ~/.cache/realkong-3.9.3); without it every Kong
# test runs on the simulator (tests/lab/kong_sim), and `make test` says so.
REALKONG_KIT := $(or $(MIXEDRUN_REALKONG_KIT),$(abspath $(ROOT)/../shared/realkong))
HAVE_REALKONG := $(wildcard $(REALKONG_KIT)/kong-cluster.sh)
# The Kong clusters the integration suites run on: real Kong, traditional (2 nodes on PostgreSQL) and hybrid (control
# plane + 2 data planes); the simulator (2 nodes) where there is no kit.
INTEG_KONGS := $(if $(HAVE_REALKONG),real-traditional real-hybrid,simulator-traditional)
# A real Kubernetes v1.26 control plane from the kit beside the project (built once into ~/.cache/realk8s-1.26.0): the
# lab's real Kubernetes engine (tests/lab/realk8s.py) and the discovery tests on it; skipped, and said so, without it.
REALK8S_KIT := $(or $(MIXEDRUN_REALK8S_KIT),$(abspath $(ROOT)/../shared/realk8s))
HAVE_REALK8S := $(wildcard $(REALK8S_KIT)/k8s-cluster.sh)
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export PYTHONPATH := $(COLL_ROOT):$(ROOT)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST      := $(BIN)/python -m pytest -p no:cacheprovider -rs

# A copy of the collection as ansible-test wants it (ansible_collections/<ns>/<name>), without local state.
COPY_COLLECTION = rm -rf $(1) && mkdir -p $(1) && tar -C $(ROOT) --exclude=./.git --exclude=./.venv --exclude=./.tmp \
	--exclude=./.lab --exclude=__pycache__ --exclude=.pytest_cache --exclude=./reports --exclude=./tests/output -cf - . \
	| tar -C $(1) -xf -

.PHONY: help
help:
	@echo "make demo         run the migration demo on the lab (README's first command)"
	@echo "make test         run every test (unit, lab, sanity, lint, packaging, core matrix, integration, molecule, e2e)"
	@echo "make units | lab-tests | sanity | lint | integration | molecule | demo-test | bench"
	@echo "make lab-up | lab-down | build | package-check | conformance"

# --- environment --------------------------------------------------------------------------------
$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp: tests/requirements.txt requirements.txt | $(BIN)/activate
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r tests/requirements.txt -r requirements.txt
	touch $@

.PHONY: venv collection-link system-deps
venv: $(VENV)/.stamp

collection-link:
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(ROOT) $(COLL_LINK)

# HAProxy and Prometheus come from Debian packages; the script installs them when missing (as root).
system-deps:
	bash tests/lab/install-deps.sh

# --- the main job ---------------------------------------------------------------------------------
.PHONY: demo lab-up lab-down
demo: venv collection-link system-deps realkong
	$(BIN)/ansible-playbook playbooks/demo.yml

lab-up: venv collection-link system-deps
	$(BIN)/python -m tests.lab up

lab-down:
	$(BIN)/python -m tests.lab down

# --- tests ----------------------------------------------------------------------------------------
.PHONY: test units lab-tests sanity lint integration molecule demo-test bench build package-check realkong _static _lab_suites _integration _integration_on
# Two streams at once (a test run is mostly one single-threaded ansible-playbook or pytest at a time, and the
# machine has two cores): the suites that need no lab, plus the demo on a lab of its own, beside the lab's own
# tests and everything that runs against the integration lab. Each stream's output is printed when it ends.
test: venv collection-link system-deps realkong realk8s
	$(MAKE) --no-print-directory -j2 --output-sync=recurse _static _lab_suites
	@echo "make test: all suites passed ($(if $(HAVE_REALKONG),Kong suites on real Kong 3.9.3: $(INTEG_KONGS),no real Kong kit: Kong suites on the simulator only); $(if $(HAVE_REALK8S),Kubernetes discovery also on a real v1.26 control plane,no realk8s kit: Kubernetes discovery on the lab's API stand-in only)"

# Builds real Kong from the kit's sources once (a few minutes; afterwards under a second), before the suites start.
realkong:
ifneq ($(HAVE_REALKONG),)
	@echo "make: real Kong from $(REALKONG_KIT) (build cached in $${REALKONG_PREFIX:-$$HOME/.cache/realkong-3.9.3})"
	@$(REALKONG_KIT)/build.sh
else
	@echo "make: no real Kong kit ($(REALKONG_KIT) or MIXEDRUN_REALKONG_KIT): the Kong suites run on the simulator only"
endif

# Builds kube-apiserver and kube-controller-manager v1.26 from the kit's sources once (about 3 minutes on an idle
# 2-core machine; afterwards under a second).
.PHONY: realk8s
realk8s:
ifneq ($(HAVE_REALK8S),)
	@echo "make: real Kubernetes from $(REALK8S_KIT) (build cached in $${REALK8S_PREFIX:-$$HOME/.cache/realk8s-1.26.0})"
	@$(REALK8S_KIT)/build.sh
else
	@echo "make: no realk8s kit ($(REALK8S_KIT) or MIXEDRUN_REALK8S_KIT): Kubernetes tests use the lab's API stand-in only"
endif

# Stream 1: the suites that need no lab, the demo on a lab of its own, then the conformance suite and the second
# integration cluster (real Kong's hybrid mode). Stream 2: the lab's own tests, then integration on the first cluster.
_static:
	$(MAKE) --no-print-directory units
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory package-check
	$(MAKE) --no-print-directory demo-test
	$(MAKE) --no-print-directory conformance
	$(if $(word 2,$(INTEG_KONGS)),$(MAKE) --no-print-directory _integration_on KONG=$(word 2,$(INTEG_KONGS)) SLOT=2)

_lab_suites:
	$(MAKE) --no-print-directory lab-tests
	$(MAKE) --no-print-directory discovery-realk8s
	$(MAKE) --no-print-directory netns-e2e
	$(MAKE) --no-print-directory core-matrix
	$(MAKE) --no-print-directory _integration_on KONG=$(word 1,$(INTEG_KONGS)) SLOT=1

# node_discovery on the real Kubernetes control plane (a lab of its own, tests/integration/lab-realk8s.yml); skipped
# with the reason printed where there is no realk8s kit.
.PHONY: discovery-realk8s
discovery-realk8s: venv collection-link system-deps realk8s
	$(PYTEST) -q tests/integration/test_node_discovery_realk8s.py

# The end-to-end suites that need real pod addresses, in a private network namespace where 10.0.0.0/8 is local
# (tests/tools/in_netns.sh): the Kubernetes binding (HAProxy -> real DB-less Kong nodes configured by the lab's
# ingress-controller stand-in from Gateway API objects on the real API server) and the capacity-aware rollout (the real
# Deployment scaled as the share grows; real Kong, Admin API binding).
.PHONY: netns-e2e kic-e2e
netns-e2e: venv collection-link system-deps realkong realk8s
	@if [ -n "$(HAVE_REALKONG)" ] && [ -n "$(HAVE_REALK8S)" ]; then \
	  tests/tools/in_netns.sh $(PYTEST) -q -p tests.lab.pytest_plugin tests/lab/tests/test_kic.py tests/integration/test_kic_e2e.py \
	    tests/integration/test_capacity_e2e.py; \
	else echo "netns-e2e: skipped: the Kubernetes binding and capacity end-to-end tests need both kits (../shared/realkong and ../shared/realk8s)"; fi

kic-e2e: netns-e2e

units: venv collection-link
	$(PYTEST) -q -n 2 tests/unit

lab-tests: venv collection-link system-deps realkong realk8s
	$(PYTEST) -q tests/lab/tests

sanity: venv
	$(call COPY_COLLECTION,$(SANITY_ROOT))
	@pipver=$$(grep -oP "pip='\K[0-9.]+" $(VENV)/lib/python*/site-packages/ansible_test/_internal/python_requirements.py | head -1); \
	  mkdir -p $$HOME/.ansible/test/cache; \
	  cp tests/tools/get_pip.py "$$HOME/.ansible/test/cache/get_pip_$${pipver//./_}.py"
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --venv --python $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') --color no

lint: venv collection-link
	$(BIN)/ansible-lint --offline
	$(BIN)/antsibull-changelog lint

# The ansible-core matrix: meta/runtime.yml claims ansible-core >= 2.17; every other suite runs on .venv's 2.19, this
# runs on each older minor that installs here (CORE_MINORS, default 2.17 2.18; each in .tmp/cores/<minor>, created once,
# re-created when tests/requirements-cores.txt changes): the unit tests (pytest -n 2), the sanity tests whose outcome
# depends on the core, and tests/integration/core_smoke.yml (bind, split, a 2-step gated rollout) on a lab of its own
# (tests/integration/lab-core.yml; real Kong, traditional, 1 node; the simulator without the kit). tests/tools/core_matrix.sh.
# Sanity subset (CORE_SANITY_TESTS): action-plugin-docs, ansible-doc, compile, import, runtime-metadata, validate-modules,
# yamllint: the tests that load the collection with that core's own code (doc and argument-spec parsing and the
# checks of argument specs against the docs, module_utils imports, the runtime.yml schema) or pin a tool per core. The
# rest is left to `make sanity` on 2.19: the file-content checks (line-endings, no-*, shebang, symlinks, empty-init,
# pslint, shellcheck, use-*) run the same code on every core, pep8 and changelog do not involve the core, there are no
# ignore files, and pylint (style, plus deprecation checks against 2.19's APIs) took over 10 minutes on 2.17 with the
# machine loaded. Measured on 2.17 with the machine loaded (load average 18): the subset in one ansible-test run 3m48s;
# the full list test by test 17 minutes up to pylint, which had not finished 10 minutes later. Per-test venvs are
# cached in ~/.ansible/test/venv, ansible-test's own in the copy's tests/output (kept between runs).
.PHONY: core-matrix
core-matrix: venv collection-link system-deps realkong
	bash tests/tools/core_matrix.sh $(CORE_MINORS)

# Integration: ansible-test targets, pytest end-to-end tests and molecule scenarios, against each Kong cluster of
# INTEG_KONGS (one lab each, stopped at the end whatever happens). `make test` runs the two clusters at once, each
# with a lab config of its own (SLOT 1: tests/integration/lab.yml, SLOT 2: lab-2.yml; other loopback addresses) and
# its own copy of the collection for ansible-test and molecule.
integration: venv collection-link system-deps realkong
	@slot=0; for kong in $(INTEG_KONGS); do slot=$$((slot + 1)); \
	  $(MAKE) --no-print-directory _integration_on KONG=$$kong SLOT=$$slot || exit 1; done

SLOT ?= 1
# Suites that do not depend on the Kong cluster's mode run on one cluster only: the AWX run (ansible-runner, the
# workflow's approve and deny paths) on the first, the front load balancer (bind, remove, rolling restart of every
# Kong node; hybrid also checks each data plane's config hash) on the second. Where only one cluster runs (no
# real Kong kit), it runs both.
# The tests that start their own real Kubernetes control plane (no Kong cluster involved) run on the second too.
INTEG_OWN_K8S := --ignore=tests/integration/test_k8s_binding_realk8s.py --ignore=tests/integration/test_k8s_lock_realk8s.py \
  --ignore=tests/integration/test_k8s_workload_realk8s.py
INTEG_ONLY_ELSEWHERE_1 := $(if $(word 2,$(INTEG_KONGS)),--ignore=tests/integration/test_front_lb.py $(INTEG_OWN_K8S))
INTEG_ONLY_ELSEWHERE_2 := --ignore=tests/integration/test_awx_runner.py
# Proxy nodes per cluster: 2 on the first; 3 data planes on the second, where the front load balancer test binds 2,
# then 3 Kong nodes, removes one and restarts each in turn.
INTEG_NODES_1 := 2
INTEG_NODES_2 := 3
INTEG_COPY = /tmp/mixedrun-kong-$(ROOT_HASH)-integration-$(SLOT)/ansible_collections/mixedrun/kong
_integration_on:
	@engine=$${KONG%%-*}; mode=$${KONG#*-}; lab=$(TEST_LAB)-$(KONG); \
	  config=tests/integration/lab$(if $(filter-out 1,$(SLOT)),-$(SLOT)).yml; \
	  echo "== integration on Kong $$engine, $$mode mode, $(INTEG_NODES_$(SLOT)) proxy nodes (lab config $$config)"; \
	  rm -rf $$lab; mkdir -p $$lab; \
	  trap "MIXEDRUN_LAB_DIR=$$lab $(BIN)/python -m tests.lab down >/dev/null 2>&1 || true" EXIT; \
	  MIXEDRUN_LAB_DIR=$$lab $(BIN)/python -m tests.lab up --config $$config --kong-engine $$engine \
	    --kong-mode $$mode --kong-nodes $(INTEG_NODES_$(SLOT)) > $$lab/up.json; \
	  $(MAKE) --no-print-directory _integration LAB_JSON=$$lab/lab.json

_integration:
	$(call COPY_COLLECTION,$(INTEG_COPY))
	$(BIN)/python tests/tools/integration_config.py $(LAB_JSON) > $(INTEG_COPY)/tests/integration/integration_config.yml
	cd $(INTEG_COPY) && $(BIN)/ansible-test integration --python $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') --color no
	MIXEDRUN_LAB_JSON=$(LAB_JSON) $(PYTEST) -q -p tests.lab.pytest_plugin tests/integration --ignore=tests/integration/test_demo.py \
	  --ignore=tests/integration/test_node_discovery_realk8s.py --ignore=tests/integration/test_kic_e2e.py --ignore=tests/integration/test_capacity_e2e.py $(INTEG_ONLY_ELSEWHERE_$(SLOT))
	@# molecule keeps its state by project directory: each cluster runs the scenarios from its own copy
	@mkdir -p $(INTEG_COPY)/.tmp/collections/ansible_collections/mixedrun && ln -sfn $(INTEG_COPY) $(INTEG_COPY)/.tmp/collections/ansible_collections/mixedrun/kong
	MIXEDRUN_LAB_JSON=$(LAB_JSON) $(MAKE) --no-print-directory -C $(INTEG_COPY) -f $(ROOT)/Makefile molecule ROOT=$(INTEG_COPY) BIN=$(BIN) VENV=$(VENV)

# One conformance suite, both engines (docs/conformance.md): real Kong (the realkong kit: traditional with 2 nodes,
# hybrid with 2 data planes) when the kit is there, and the simulator (traditional, 2 nodes). Not part of `test`.
.PHONY: conformance
conformance: venv realkong
	@rc=0; if [ -n "$(HAVE_REALKONG)" ]; then \
	  $(BIN)/python -m tests.conformance.run --engine real --mode traditional --nodes 2 --kit "$(REALKONG_KIT)" || rc=1; \
	  $(BIN)/python -m tests.conformance.run --engine real --mode hybrid --nodes 2 --kit "$(REALKONG_KIT)" || rc=1; \
	else echo "conformance: no realkong kit at $(REALKONG_KIT): running the simulator only"; fi; \
	$(BIN)/python -m tests.conformance.run --engine simulator --mode traditional --nodes 2 || rc=1; \
	exit $$rc

# The README's first command end to end, on a lab of its own (temporary state dir, free ports).
demo-test: venv collection-link system-deps realkong
	$(PYTEST) -q tests/integration/test_demo.py

molecule: venv collection-link
	@set -e; for scenario in $$(ls extensions/molecule 2>/dev/null | grep -v '^default$$' || true); do \
	  [ -f extensions/molecule/$$scenario/molecule.yml ] || continue; \
	  echo "== molecule scenario $$scenario"; \
	  (cd extensions && $(BIN)/molecule test -s $$scenario); \
	done

bench: venv collection-link system-deps
	@for b in tests/benchmarks/bench_*.py; do m=$${b%.py}; m=$${m//\//.}; echo "== $$m"; $(BIN)/python -m $$m; done

build: venv
	@mkdir -p $(TMP)/dist
	$(BIN)/ansible-galaxy collection build --force --output-path $(TMP)/dist .

# The collection as its users get it (tests/tools/package_check.sh): the tarball (nothing local inside), galaxy-importer
# on it (Galaxy's upload check, tests/tools/galaxy-importer.cfg), the tarball installed into an empty path and used
# from there, and the execution environment's build context (ansible-builder create, validated; no image: no
# container engine here). galaxy-importer and ansible-builder get a virtual environment of their own (galaxy-importer
# pins attrs<24 and flake8<7, which would downgrade .venv), installed once (the stamp).
IMPORTER_VENV := $(TMP)/venv-importer
$(IMPORTER_VENV)/.stamp: tests/tools/importer-requirements.txt
	rm -rf $(IMPORTER_VENV)
	$(PYTHON) -m venv $(IMPORTER_VENV)
	$(IMPORTER_VENV)/bin/python -m pip install -q --upgrade pip
	$(IMPORTER_VENV)/bin/python -m pip install -q -r tests/tools/importer-requirements.txt
	touch $@

package-check: venv $(IMPORTER_VENV)/.stamp
	VENV=$(VENV) IMPORTER_VENV=$(IMPORTER_VENV) bash tests/tools/package_check.sh
