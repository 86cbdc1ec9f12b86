"""The Triton backend: kernels (kernels.py), the op bodies composed from them (op_bodies.py) and the
kernel generator in PyTorch (generator.py). Importing it needs triton >= 3.0; dsa_ops.ops imports it
only when that holds and reports the backend unavailable otherwise."""
