# ocrobin: `make demo` binarizes the bundled sample page; `make test` runs the test suite.
# Both create the virtual environment .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
TORCH  ?= torch==2.13.0
DEMO   ?= examples/demo-page.png
OUT    ?= out/demo

.PHONY: demo test venv venv-dev lint bench fonts clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)"
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e ".[dev,onnx,ocrd,ray,serve]"
	touch $@

venv: $(VENV)/.base
venv-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/ocrobin binarize $(DEMO) -o $(OUT) --prob --overwrite --no-progress

test: $(VENV)/.dev
	$(VENV)/bin/pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.base
	$(PY) benchmarks/speed.py --size 2000x3000 --repeats 3

# Fonts used by the synthetic page renderer (ocrobin degrade); optional, Debian/Ubuntu, needs root.
fonts:
	apt-get install -y -q fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-linuxlibertine \
	  fonts-ebgaramond fonts-dancingscript fonts-kristi fonts-breip fonts-dkg-handwriting fonts-gotico-antiqua fonts-blankenburg

clean:
	rm -rf out .pytest_cache .ruff_cache
