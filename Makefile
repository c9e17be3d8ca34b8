# Two commands do all setup: `make run` (generate with the shipped model) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= python3
BARS   ?= 16

.PHONY: setup run test test-slow lint format bench train-small train-many train-vae ship clean

# torch is pinned to 2.13.0: on the CPU machines we build on, that version resolves to the
# CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# tinysoundfont (the synthesizer of `aurl render`) declares PyAudio, which it needs only for
	# live playback and which has no Linux wheel: install it without its dependencies.
	$(PY) -m pip install --quiet --no-deps tinysoundfont==0.3.7
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/aurl generate --bars $(BARS)

test: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

# The few tests marked slow (two-node training, hung-worker recovery, the analysis ground
# truth): .ci/run runs them after `make test`.
test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	for b in tokenize generate long prepare train_feed train analysis evaluate recipes; do \
		$(PY) benchmarks/bench_$$b.py || exit 1; done

# Reproduces bach-small (about an hour on 2 CPU cores).
train-small: $(STAMP)
	$(VENV)/bin/aurl train --config configs/small.yaml

# Reproduces the default model in its five stages (about three and a half hours on 2 CPU
# cores); then `make ship SHIP=many-small-repeat AS=many-small`.
train-many: $(STAMP)
	$(VENV)/bin/aurl train --config configs/many-small.yaml
	$(VENV)/bin/aurl train --config configs/many-small.yaml --resume train.max_steps=1800 train.lr=6e-4
	$(VENV)/bin/aurl train --config configs/many-small-fill.yaml --init runs/many-small/model
	$(VENV)/bin/aurl train --config configs/many-small-fill.yaml --resume train.max_steps=800 train.lr=4e-4
	$(VENV)/bin/aurl train --config configs/many-small-repeat.yaml --init runs/many-small-fill/model

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

# Reproduces the shipped VAE in four stages (about 45 + 50 + 50 + 26 minutes on 2 idle CPU
# cores), its decoder started from bach-small; then `make ship SHIP=vae-small-fourth AS=vae-small`.
train-vae: $(STAMP)
	$(VENV)/bin/aurl train --config configs/vae-small.yaml --init bach-small
	$(VENV)/bin/aurl train --config configs/vae-small-more.yaml --init runs/vae-small/model
	$(VENV)/bin/aurl train --config configs/vae-small-third.yaml --init runs/vae-small-more/model
	$(VENV)/bin/aurl train --config configs/vae-small-fourth.yaml --init runs/vae-small-third/model

# Copies the best weights of runs/$(SHIP) into the package as shipped/$(AS) (default: the
# run's name), in float16 (half the size): `make ship` for the transformer, `make ship
# SHIP=vae-small` for the VAE, `make ship SHIP=many-small-repeat AS=many-small` for the default.
SHIP ?= bach-small
# (make defines AS itself, as the assembler: ?= would keep that)
AS := $(if $(filter default undefined,$(origin AS)),$(SHIP),$(AS))
ship: $(STAMP)
	$(PY) -c "import torch; from aurl.models import load_model, save_model; \
	f = load_model('runs/$(SHIP)/model'); \
	save_model(f.model, f.tokenizer, 'src/aurl/shipped/$(AS)', dict(f.meta, name='$(AS)'), dtype=torch.float16)"
