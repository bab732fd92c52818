# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,lab,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fanout serve

# Debian packages the tests drive for real: Chromium for the chat page, redis-server for the
# broker, Node.js (20+; the JS client's tests install their npm dev dependency themselves).
system-deps:
	@command -v chromium >/dev/null 2>&1 || command -v /usr/bin/chromium >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	@command -v redis-server >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }
	@command -v node >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict

pytest: $(STAMP) system-deps
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/generator_capacity.py --results bench/RESULTS.md
	$(BIN)/python bench/fanout_vs_article.py
	$(BIN)/python bench/article_questions.py
	$(BIN)/python bench/redis_crossnode.py --results bench/RESULTS.md
	$(BIN)/python bench/auth_cost.py --results bench/RESULTS.md
	$(BIN)/python bench/users_presence.py --results bench/RESULTS.md
	$(BIN)/python bench/reconnect_storm.py --results bench/RESULTS.md
	$(BIN)/python bench/idle_memory.py --results bench/RESULTS.md
	$(BIN)/python bench/redis_clients.py --results bench/RESULTS.md
	$(BIN)/python bench/redis_cluster.py --results bench/RESULTS.md

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
