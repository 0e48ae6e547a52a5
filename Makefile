# Two commands for a fresh machine (README.md):
#   make demo   set up, generate the two synthetic demo cohorts (images; study-scale connectomes),
#               run the workflow on them
#   make test   set up, run the test suite
# Setup creates .venv with the pinned Python packages and, where `tckgen` is missing and
# we are root on Debian/Ubuntu, installs MRtrix3 from the distribution (apt package mrtrix3)
# and, where no chromium is found, Debian's chromium (the report test renders report.html with it).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE := $(BIN)/snakemake --profile profiles/local --cores $(CORES)

.PHONY: setup demo demo-images demo-study test lint clean-demo mrtrix3 chromium

setup: $(VENV)/.installed mrtrix3 chromium

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "setup: '$(PYTHON) -m venv' failed: install Python's venv module (Debian: apt-get install python3-venv)"; exit 1; fi; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $@

mrtrix3:
	@if command -v tckgen >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "setup: installing MRtrix3 (Debian package mrtrix3)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mrtrix3 >/dev/null; \
	else \
	  echo "setup: MRtrix3 is not on PATH and this is not a root Debian/Ubuntu shell."; \
	  echo "  Without root: run the workflow with per-rule conda environments"; \
	  echo "  (snakemake --software-deployment-method conda, envs/mrtrix.yaml), or load your"; \
	  echo "  cluster's module (e.g. 'module load mrtrix3') before 'make'."; \
	  exit 1; \
	fi

chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "setup: installing Chromium (Debian package chromium), used by the report test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "setup: chromium is not on PATH and this is not a root Debian/Ubuntu shell:"; \
	  echo "  the report test (tests/workflow/test_report_in_browser.py) will be skipped. Install a"; \
	  echo "  Chromium/Chrome and put it on PATH (or set SFC_CHROMIUM) to run it."; \
	fi

demo: demo-images demo-study
	@echo "demo finished:"
	@echo "  results/report.html        the imaging demo: does the pipeline run on images (QC pictures in results/sub-*/qc/,"
	@echo "                             agreement with the truth in results/group/demo_truth_agreement.tsv)"
	@echo "  results/study/report.html  the study-scale demo: what a study-sized analysis finds (planted truth in"
	@echo "                             demo/study/truth/planted.tsv)"

# Part 1: 12 synthetic subjects from images (T1w, DWI, BOLD) through every rule.
# Its fast settings (config/demo.yaml) go on top of the real-data defaults (config/config.yaml).
demo-images: setup
	$(SNAKEMAKE) simulate_demo --configfile config/demo.yaml
	$(SNAKEMAKE) --configfile config/demo.yaml
	$(BIN)/python -m sfc.simulate evaluate results demo/truth --out results/group/demo_truth_agreement.tsv

# Part 2: the study's 308 subjects at the connectome level (generator preset `study`, three sites),
# group stage, classification and report with config/study.yaml.
STUDY_DIR := demo/study
demo-study: setup $(STUDY_DIR)/participants.tsv
	$(SNAKEMAKE) --configfile config/study.yaml

$(STUDY_DIR)/participants.tsv:
	$(BIN)/python -m sfc.simulate connectomes $(STUDY_DIR).tmp --preset study --weights count >/dev/null
	rm -rf $(STUDY_DIR) && mv $(STUDY_DIR).tmp $(STUDY_DIR)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/snakemake --lint --configfile config/demo.yaml
