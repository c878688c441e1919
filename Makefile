# The two commands a fresh machine needs (see README.md):
#   make demo   set up .venv and run the main job on the generated sample data
#   make test   set up .venv with the dev extras and run every test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pytest arguments, e.g. make test PYTEST_ARGS="-m 'not browser'"
PYTEST_ARGS ?=

.PHONY: demo test install sample clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first and pinned: the CPU wheel on local disk. An unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m workbench.cli._checkenv
	touch $(STAMP)

install: $(STAMP)

sample: $(STAMP)
	$(VENV)/bin/workbench data sample --out data/sample --if-missing

demo: sample
	$(VENV)/bin/workbench report run notebooks/01_quickstart.ipynb --out reports
	@echo
	@echo "Main job report: $(CURDIR)/reports/01_quickstart/latest/report.html"

# pytest exits 5 when it collected no tests: say so instead of failing silently
test: $(STAMP)
	@OMP_NUM_THREADS=1 $(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests were collected" >&2; fi; exit $$status

clean-venv:
	rm -rf $(VENV)
