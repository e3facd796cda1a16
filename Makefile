# The kit's front door. `make up` brings the local stack up; `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV       ?= .venv
PYTHON     ?= python3
# The Debian release of the local stack and the Molecule scenarios: trixie (Debian 13, the
# default) or bookworm (Debian 12): `make up DIST=bookworm`, `make test DIST=bookworm`.
DIST       ?= $(or $(KIT_DIST),trixie)
# The base image: built for DIST by default; `make up IMAGE=name` or `KIT_BASE_IMAGE=name
# make up` uses another (what build-image.sh, local_up.yml and the Molecule scenarios read).
IMAGE      ?= $(or $(KIT_BASE_IMAGE),kit-$(DIST)-systemd:latest)
INVENTORY  ?= inventories/local
# Load balancers of the local stack: `make up LB=6`. Kept for later runs (converge, smoke,
# loadtest) in $(LB_SAVED) until `make down`; KIT_LB_COUNT overrides it.
LB         ?=
LB_SAVED   := .cache/local-stack/lb_count

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export KIT_DIST := $(DIST)
export KIT_BASE_IMAGE := $(IMAGE)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 1

# The local stack's runs use Mitogen (one interpreter per host for the whole run; see
# ansible/plugins/strategy/mitogen_linear.py). KIT_STRATEGY=linear uses Ansible's own.
KIT_STRATEGY ?= mitogen_linear
PLAYBOOK := ANSIBLE_STRATEGY=$(KIT_STRATEGY) ansible-playbook -i $(INVENTORY)
STAMP    := $(VENV)/.installed
# The example application's own environment (its dependencies, not the kit's tools).
APP_VENV  := .cache/app-venv
APP_STAMP := $(APP_VENV)/.installed
# The Django example's own environment (examples/django).
DJANGO_VENV  := .cache/django-venv
DJANGO_STAMP := $(DJANGO_VENV)/.installed
# The reaper package's own environment (gunicorn for its integration tests).
REAPER_VENV  := .cache/reaper-venv
REAPER_STAMP := $(REAPER_VENV)/.installed

.PHONY: help setup engine image up converge smoke down lint unit molecule molecule-stack molecule-roles test prerequisites env docs bench loadtest screenshot clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	@scripts/python-venv.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

setup: $(STAMP) ## Install the pinned tools into .venv (installs python3-venv when missing)

$(APP_STAMP): app_skeleton/pyproject.toml
	@scripts/python-venv.sh $(PYTHON)
	$(PYTHON) -m venv $(APP_VENV)
	$(APP_VENV)/bin/pip install --quiet --upgrade pip
	$(APP_VENV)/bin/pip install --quiet -e 'app_skeleton[test]'
	touch $@

engine: ## Start the Docker engine if it is not answering (installs docker.io when missing)
	@scripts/docker-engine.sh

image: engine ## Build the systemd Debian base image of DIST (cached)
	@scripts/build-image.sh

up: setup image ## Create the local stack (LB=N load balancers), converge it with ansible/site.yml, smoke-test it
	@if [ -n "$(LB)" ]; then mkdir -p $(dir $(LB_SAVED)) && echo "$(LB)" > $(LB_SAVED); fi
	$(PLAYBOOK) ansible/local_up.yml
	$(PLAYBOOK) ansible/site.yml
	$(PLAYBOOK) ansible/smoke.yml

converge: setup ## Converge an existing stack again (ansible/site.yml)
	$(PLAYBOOK) ansible/site.yml

smoke: setup ## Smoke-test the running stack
	$(PLAYBOOK) ansible/smoke.yml

down: setup engine ## Remove the local stack's containers and network
	$(PLAYBOOK) ansible/local_down.yml
	rm -f $(LB_SAVED)

lint: setup ## yamllint, ansible-lint (production profile), ruff
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

$(REAPER_STAMP): reaper/pyproject.toml
	@scripts/python-venv.sh $(PYTHON)
	$(PYTHON) -m venv $(REAPER_VENV)
	$(REAPER_VENV)/bin/pip install --quiet --upgrade pip
	$(REAPER_VENV)/bin/pip install --quiet -e 'reaper[test]' mypy
	touch $@

$(DJANGO_STAMP): examples/django/pyproject.toml
	@scripts/python-venv.sh $(PYTHON)
	$(PYTHON) -m venv $(DJANGO_VENV)
	$(DJANGO_VENV)/bin/pip install --quiet --upgrade pip
	$(DJANGO_VENV)/bin/pip install --quiet -e 'examples/django[test]'
	touch $@

unit: setup $(APP_STAMP) $(REAPER_STAMP) $(DJANGO_STAMP) ## Unit tests: the kit (inventory, templates, specs, pre-flight), the app, the reaper, the Django example
	pytest -n auto --dist loadfile tests
	cd app_skeleton && ../$(APP_VENV)/bin/mypy src tests && ../$(APP_VENV)/bin/pytest
	cd reaper && ../$(REAPER_VENV)/bin/mypy src tests && ../$(REAPER_VENV)/bin/pytest
	cd examples/django && DJANGO_SECRET_KEY=typecheck DATABASE_URL=sqlite://:memory: \
		../../$(DJANGO_VENV)/bin/mypy src tests && ../../$(DJANGO_VENV)/bin/pytest

molecule-stack: setup image ## Molecule: the full topology (converge, idempotence, verify); DIST=bookworm on Debian 12
	@scripts/apt-command.sh testssl testssl.sh
	molecule --base-config $(CURDIR)/.config/molecule/config.yml test -s default

# Role scenarios run two at a time: most of a scenario's time is spent waiting (apt, systemd,
# services starting), and two together take about what one takes alone.
molecule-roles: setup image ## Molecule: each role's own scenario (ROLES="roles/app/ roles/redis/" for some; JOBS=N at once, 2 by default)
	@$(if $(JOBS),KIT_MOLECULE_JOBS=$(JOBS) )scripts/molecule-roles.sh $(or $(ROLES),roles/*/)

molecule: molecule-roles molecule-stack ## Every Molecule scenario

test: setup ## Everything CI runs: lint, unit tests, Molecule scenarios
	$(MAKE) --no-print-directory -j 2 --output-sync=target lint prerequisites
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory molecule

# What the unit tests and the scenarios need, made while lint runs (on a fresh machine: the
# base image and three virtualenvs, mostly downloads and unpacking, where lint is CPU).
prerequisites: image $(APP_STAMP) $(REAPER_STAMP) $(DJANGO_STAMP)

env: setup ## Scaffold an environment: make env NAME=staging [PROVIDER=linode]
	@test -n "$(NAME)" || { echo "make env: name the environment: make env NAME=staging" >&2; exit 2; }
	python scripts/new_env.py "$(NAME)" --provider "$(or $(PROVIDER),hosts)"

docs: setup ## Regenerate the role READMEs' variable tables
	python scripts/role_docs.py

# Every benchmark in benchmarks/, each with its defaults; those that import the reaper package
# run in the reaper's own virtualenv.
# Every script in benchmarks/ but stack.py, the module they share, converge_dist.py, which
# replaces the running stack with one of each Debian release, and backup_restore.py, which
# restores the database from a backup (run each by hand).
BENCHMARKS        := $(filter-out benchmarks/stack.py benchmarks/converge_dist.py benchmarks/backup_restore.py,$(sort $(wildcard benchmarks/*.py)))
REAPER_BENCHMARKS := benchmarks/reaper_overhead.py

bench: setup $(REAPER_STAMP) ## Every benchmark against the running local stack (results: benchmarks/RESULTS.md; installs wrk when missing)
	@scripts/apt-command.sh wrk
	for benchmark in $(filter-out $(REAPER_BENCHMARKS),$(BENCHMARKS)); do echo "== $$benchmark"; python "$$benchmark"; done
	for benchmark in $(REAPER_BENCHMARKS); do echo "== $$benchmark"; $(REAPER_VENV)/bin/python "$$benchmark"; done

CLIENTS  ?= 5000
DURATION ?= 60
loadtest: setup ## Keep-alive clients with think time through every lb: make loadtest CLIENTS=50000 DURATION=60
	python benchmarks/loadtest.py --clients $(CLIENTS) --duration $(DURATION)

# KIT_PROMETHEUS_URL (the local stack's by default), KIT_SCREENSHOT_RANGE (30m): see the script.
screenshot: ## Screenshot Prometheus's page of graphs per tier (/consoles/kit.html) into .cache/screenshots (installs chromium when missing)
	@scripts/screenshot.sh

clean: down ## Remove the stack and the virtualenv
	rm -rf $(VENV) .cache
