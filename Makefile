# The two commands of the README: `make test` and `make bench`. Both set up .venv on first use (torch,
# numpy, ninja, pybind11, pytest, hypothesis, triton, onnx/onnxscript/onnxruntime for the export tests,
# matplotlib for the benchmark's plot, and this package built against that torch).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch
NATIVE_SOURCES := setup.py $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')

.PHONY: test test-asan bench install clean gpu-deps

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" numpy ninja pybind11 pytest hypothesis triton onnx onnxscript onnxruntime matplotlib
	touch $@

$(VENV)/.built: $(VENV)/.deps $(NATIVE_SOURCES)
	$(PY) -m pip install --no-build-isolation --no-deps -e .
	touch $@

install: $(VENV)/.built

# The suite, then the cpu backend's tests again with the CUDA kernels in their CPU emulation as the CPU
# kernels (tests/cuda_emulation.py; gradcheck in its fast mode there, tests/test_autograd.py).
test: install
	$(PY) -m pytest
	DSA_OPS_TEST_CUDA_EMULATION=1 $(PY) -m pytest tests -k cpu --ignore tests/test_cuda_emulation.py

bench: install
	$(PY) -m benchmarks.bench_dsa --out bench_results

# The emulated CUDA kernels' tests under AddressSanitizer (tests/cuda_emulation.py): a kernel that reads or
# writes outside a tensor's memory fails. On demand (13 minutes on 2 cores), not in CI.
test-asan: install
	DSA_OPS_EMULATION_ASAN=1 ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libstdc++.so.6)" \
	$(PY) -m pytest tests/test_cuda_emulation.py -q

gpu-deps: $(VENV)/.deps  # pure-Python test deps for a GPU machine without network (scripts/gpu_check.sh)
	$(PY) -m pip install --quiet --target gpu_deps pytest hypothesis pytest-xdist

clean:
	rm -rf build *.egg-info dsa_ops/_C*.so
