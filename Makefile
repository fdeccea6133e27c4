# One command sets everything up: `make test` (tests) and `make demo` (main job on demo data)
# each bootstrap .venv in the repo. torch/torchvision come from PyPI through uv: the CPU-only
# local torch build cannot import PyPI's torchvision (see DEVELOPERS.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
TORCH_PIN := torch==2.13.0 torchvision==0.28.0

.PHONY: test demo venv bench-store bench-extract bench-train-vqa bench-train-caption bench-train-nav bench-render-views clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install -q --python $(PY) $(TORCH_PIN)
	$(UV) pip install -q --python $(PY) -e ".[test]" $(TORCH_PIN)
	touch $@

test: venv
	$(PY) -m pytest -q

# Everything on built-in synthetic COCO, Visual Genome and Matterport/R2R data: extract
# (random RN50 weights offline; `make demo PRETRAINED=openai` with internet for real ones),
# info + verify, train and score VQA, captioning and navigation, print a summary.
demo: venv
	$(PY) -m clipfeat.apps.demo --dir demo

bench-extract: venv
	$(PY) benchmarks/extract.py

bench-train-vqa: venv
	$(PY) benchmarks/train_vqa.py

bench-train-caption: venv
	$(PY) benchmarks/train_caption.py

bench-train-nav: venv
	$(PY) benchmarks/train_nav.py

bench-render-views: venv
	$(PY) benchmarks/render_views.py

bench-store: venv
	$(PY) benchmarks/store_read.py

clean:
	rm -rf $(VENV) build *.egg-info demo
