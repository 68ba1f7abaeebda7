# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo app lint docs space-check container-check pretrained bench bench-scan bench-ppo bench-meta bench-adapt bench-memory bench-metaworld clean

# Packages go in with uv (about a minute here, against pip's four and a half, with the same versions resolved):
# --compile-bytecode because importing torch without its bytecode costs seconds in every test process. uv reads
# no pip configuration, so pip's local wheel folder (PIP_FIND_LINKS or pip's find-links, where torch 2.13.0's
# CPU build lies on this machine) is passed on; without one torch comes from PyPI, as with pip.
FIND_LINKS = $(or $(PIP_FIND_LINKS),$(shell $(PY) -m pip config get global.find-links 2>/dev/null))
INSTALL = $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python \
	$(if $(FIND_LINKS),--find-links $(FIND_LINKS))

$(BIN)/uv:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet uv

$(STAMP): pyproject.toml | $(BIN)/uv
	$(INSTALL) torch==2.13.0
	$(INSTALL) -e ".[dev,app,docs,rsi,postgres]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check ssm_metarl tests benchmarks notebooks
	$(BIN)/ruff format --check ssm_metarl tests benchmarks notebooks
	$(BIN)/mypy

# the documentation site (mkdocs + mkdocstrings); --strict fails on a broken link or a bad docstring
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# the suite runs in TEST_WORKERS pytest-xdist processes (2: this machine's cores), each test going to whichever
# process is free (worksteal: the long learning tests do not queue behind one another); TEST_WORKERS=0 runs it
# in one process. pytest prints the slowest tests (--durations in pyproject.toml).
TEST_WORKERS ?= 2
test: $(STAMP) lint docs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

demo: $(STAMP)
	$(BIN)/ssm-metarl demo

app: $(STAMP)
	$(BIN)/ssm-metarl app

# the Hugging Face Space from the committed files in a fresh venv (downloads its requirements; minutes)
space-check:
	bash scripts/check_space.sh

# the image built with podman from a local Debian base (no registry needed), its demo run and its app served on
# loopback (installs podman and debootstrap from apt when missing; minutes)
container-check:
	bash scripts/container_check.sh

$(VENV)/.bench: $(STAMP)
	$(INSTALL) -e ".[dev,bench]"
	touch $(VENV)/.bench

bench-scan: $(STAMP)
	cd benchmarks && ../$(BIN)/python scan_speed.py

bench-ppo: $(VENV)/.bench
	cd benchmarks && ../$(BIN)/python ppo_cartpole.py
	cd benchmarks && ../$(BIN)/python ppo_mujoco.py --steps 300000 --models ssm mlp
	cd benchmarks && ../$(BIN)/python ppo_mujoco.py --envs Ant-v5 Humanoid-v5 --steps 300000 --jobs 2 --merge results/ppo_mujoco.json
	cd benchmarks && ../$(BIN)/python ppo_mujoco.py --steps 1000000 --models ssm --name ppo_mujoco_1m

# meta-RL benchmarks (issue "Meta-RL"); the README quotes the runs committed under benchmarks/results/
bench-meta: $(STAMP)
	cd benchmarks && ../$(BIN)/python meta_navigation.py
	cd benchmarks && ../$(BIN)/python meta_bandits.py
	cd benchmarks && ../$(BIN)/python meta_cartpole.py

$(VENV)/.memory: $(STAMP)
	$(INSTALL) -e ".[dev,memory]"
	touch $(VENV)/.memory

# POPGym's memory benchmark (issue "The SSM as the best memory backbone"): 8 envs x 6 models x 3 seeds
bench-memory: $(VENV)/.memory
	cd benchmarks && ../$(BIN)/python memory.py --jobs 2

# Meta-World ML1 through its own evaluation (issue "Runs everywhere"): metaworld pins its own MuJoCo, so it gets
# its own venv; the Meta-World tests run there first
MW_VENV := .venv-metaworld
$(MW_VENV)/.installed: pyproject.toml
	test -x $(MW_VENV)/bin/python || $(PY) -m venv $(MW_VENV)
	$(MW_VENV)/bin/pip install --quiet --upgrade pip
	$(MW_VENV)/bin/pip install --quiet torch==2.13.0
	$(MW_VENV)/bin/pip install --quiet -e ".[dev,metaworld]"
	touch $(MW_VENV)/.installed

bench-metaworld: $(MW_VENV)/.installed
	$(MW_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_metaworld.py
	cd benchmarks && ../$(MW_VENV)/bin/python metaworld_ml1.py --jobs 2

bench-adapt: $(STAMP)
	cd benchmarks && ../$(BIN)/python adaptation.py

# regenerate every shipped model under ssm_metarl/pretrained/ from scratch
pretrained: $(STAMP)
	cd benchmarks && ../$(BIN)/python make_pretrained.py

bench: bench-scan bench-ppo bench-meta bench-adapt

clean:
	rm -rf $(VENV) build *.egg-info
