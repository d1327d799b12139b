# Two commands set everything up on a fresh Debian 12 machine, as root:
#   make demo   system packages + virtual environment, then a walk through the features
#   make test   the same plus test dependencies, then the whole test suite
# Both are safe to run again: each step checks what is already there.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
# the real wandb package, in an environment of its own, for tests/interop/ (about 15 s)
WVENV  ?= .venv-wandb
WSTAMP := $(WVENV)/.installed

.PHONY: demo test interop lint bench faults system-deps venv mount-helper clean

system-deps:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml scripts/install-pyfuse3.sh patches/pyfuse3-3.5.0-artifactfs.patch | system-deps
	@scripts/make-venv.sh $(VENV) .
	@touch $@

$(TSTAMP): pyproject.toml $(STAMP)
	@scripts/make-venv.sh $(VENV) '.[test]'
	@touch $@

$(WSTAMP): scripts/install-wandb-venv.sh | system-deps
	@scripts/install-wandb-venv.sh $(WVENV)
	@touch $@

venv: $(STAMP)

# /sbin/mount.fuse.artifactfs -> the venv's mount.artifactfs, for mount -t fuse.artifactfs
# and fstab lines (docs/mount.md); checked on every run, as it lives outside the checkout
mount-helper: $(STAMP)
	@scripts/install-mount-helper.sh $(VENV)

demo: system-deps $(STAMP) mount-helper
	@scripts/demo.sh

test: system-deps $(TSTAMP) $(WSTAMP) mount-helper
	$(VENV)/bin/ruff check artifactfs tests benchmarks scripts
	$(VENV)/bin/mypy
	AFS_WANDB_VENV=$(abspath $(WVENV)) $(VENV)/bin/pytest -q

# the W&B interop group alone (it is part of make test too): about 10 s after the install
interop: system-deps $(TSTAMP) $(WSTAMP)
	AFS_WANDB_VENV=$(abspath $(WVENV)) $(VENV)/bin/pytest -q tests/interop tests/test_wandb_io.py

lint: $(TSTAMP)
	$(VENV)/bin/ruff check artifactfs tests benchmarks scripts
	$(VENV)/bin/mypy

# make bench BENCH_ARGS=--quick for a smoke run of a few minutes; the ImageNet-sized version
# (issue 16) takes about 25 min and 6 GB of disk: IMAGENET_ARGS='--sizes 100000 --no-local'
# for a short look; scale_out.py (issue 17) starts its own PostgreSQL and SeaweedFS, a few minutes
bench: system-deps $(TSTAMP)
	@scripts/install-bench-deps.sh $(VENV)
	$(PY) benchmarks/peers.py $(BENCH_ARGS)
	$(PY) benchmarks/imagenet_scale.py $(IMAGENET_ARGS)
	$(PY) benchmarks/scale_out.py $(SCALE_ARGS)

# fault injection (issue 15): one table, also written to docs/reliability.md; about 15 min.
# make faults FAULTS_ARGS='--only blob_corruption --n 10' for one scenario
faults: system-deps $(TSTAMP)
	$(PY) benchmarks/faults.py $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) $(WVENV) build *.egg-info
