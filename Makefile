# Shortcuts for working on flightbook; `make` lists them. The two commands a newcomer
# needs work without make: python3 dev.py up, python3 dev.py test.

.DEFAULT_GOAL := help
BIN := .venv/bin
ROLE ?= customer
SUB ?= alice

.PHONY: help venv up test test-unit test-integration test-e2e lint fmt \
	stack-up stack-down stack-status migrate token

help:              ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

venv:              ## Create .venv and install flightbook (again only when pyproject.toml changed)
	@python3 -c 'import dev; dev.setup()'

up:                ## Start the local servers and every process until Ctrl-C
	python3 dev.py up

test:              ## Everything CI runs: ruff, mypy, unit, integration and e2e tests
	python3 dev.py test

test-unit: venv    ## Unit tests only (no sockets)
	$(BIN)/pytest -m unit

test-integration: venv  ## Integration tests (start their own servers)
	$(BIN)/pytest -m integration

test-e2e: venv     ## End-to-end tests (start their own servers and processes)
	$(BIN)/pytest -m e2e

lint: venv         ## ruff check, ruff format --check, mypy (strict)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv          ## Format and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

stack-up: venv     ## Start (or reuse) only the local servers
	$(BIN)/flightbook stack up

stack-down: venv   ## Stop the local servers the stack started
	$(BIN)/flightbook stack down

stack-status: venv ## Show the local servers
	$(BIN)/flightbook stack status

migrate: venv      ## Apply migrations/ (idempotent)
	$(BIN)/flightbook migrate

token: venv        ## Print a JWT for local use (ROLE=customer SUB=alice)
	@$(BIN)/flightbook token --role $(ROLE) --sub $(SUB)
