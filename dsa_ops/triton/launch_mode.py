"""The environment switches that force a fused Triton path on or off, parsed as the CUDA backend parses
them (csrc/cuda/launch_mode.h): unset, "" or "auto" leave the choice to the backend's heuristic,
"always" takes the path wherever it can run, "never" never."""
import os


def launch_mode(variable):
    """"auto", "always" or "never"; a ValueError naming the variable for anything else."""
    value = os.environ.get(variable) or "auto"
    if value not in ("auto", "always", "never"):
        raise ValueError(f"{variable} must be auto, always or never, got {value!r}")
    return value
