# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
# Links, QR codes and reminders name the address the app is served at: this one, unless
# DIARY_BASE_URL is set (behind a proxy, set it to the public https address).
export DIARY_BASE_URL ?= http://$(HOST):$(PORT)

.PHONY: run test lint format install benchmarks translations mutation

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pybabel compile -d diary/translations >/dev/null
	touch $@

install: $(BIN)/.installed

# Migrate, load the demo study into a new database, then serve with gunicorn beside the
# scheduler process. Ctrl-C stops both.
run: install
	@mkdir -p instance && echo "$(DIARY_BASE_URL)" > instance/served_url.txt
	$(FLASK) diary init
	$(FLASK) diary demo --if-empty
	@echo "Serving on http://$(HOST):$(PORT)  (Ctrl-C stops the web server and the scheduler)"
	@$(FLASK) diary scheduler & SCHEDULER=$$!; \
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers 2 --worker-class gthread --threads 4 \
	  --access-logfile - wsgi:app & WEB=$$!; \
	trap 'kill $$SCHEDULER $$WEB 2>/dev/null; wait' INT TERM EXIT; \
	wait $$WEB

test: install
	$(BIN)/python -m pytest -q

# The linter and the formatter's check (pyproject.toml); `make format` rewrites the code in that style.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Mutation testing of the rule packages (minutes; not part of `make test` or CI): how many small
# breakages of a rule the tests catch, and which survive. See docs/development.md.
mutation: install
	$(BIN)/python tests/mutation.py

benchmarks: install
	$(BIN)/python benchmarks/reminders.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/deployment.py
	$(BIN)/python benchmarks/dashboard.py
	$(BIN)/python benchmarks/web.py
	$(BIN)/python benchmarks/scale.py

# Re-extract the participant-facing texts and rebuild the Spanish catalog from
# diary/translations/spanish.py (fails, listing them, if a text has no Spanish yet).
translations: install
	$(BIN)/python -m diary.translations.build
	$(BIN)/pybabel compile -d diary/translations
