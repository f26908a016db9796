# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test install lint format migrate demo serve worker beat bench bench-tools clean js chromium

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# npm packages from package-lock.json (the session manager's minifier; ECharts, which staticfiles serves
# to the dashboard from node_modules/); node_modules is not committed.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

## make js: minify static/session/session-manager.js into static/session/dist/ and print its size
js: $(NODE_STAMP)
	node static/session/build.mjs

# The browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

## make run: venv, install, migrate, demo site + staff user + demo data, serve on 127.0.0.1:8000
run: install js
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setup_periodic_tasks
	$(PY) manage.py seed_demo
	$(VENV)/bin/uvicorn config.asgi:application --host 127.0.0.1 --port 8000 --no-access-log --lifespan off

## make test: venv, install, lint, the whole suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set)
test: install js chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	node --test tests/js/
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: install
	$(VENV)/bin/celery -A config worker --loglevel INFO

beat: install
	$(VENV)/bin/celery -A config beat --loglevel INFO

# wrk (Debian) drives the flat-out benchmark runs, so the load generator does not take the
# server's CPU; without it the benchmarks fall back to their Python client.
bench-tools:
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk) || echo "wrk not installed: benchmarks use the Python client"

bench: install bench-tools
	$(PY) bench/session_create.py
	test -z "$$DATABASE_URL" || $(PY) bench/ingest.py
	$(PY) bench/recommend_eval.py

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles node_modules static/session/dist
