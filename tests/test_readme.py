"""The README's Quick start runs as written (on the CPU) and does what its comments say."""
import os
import re

import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def quick_start_code():
    """The first python block under the README's "## Quick start" heading."""
    with open(README) as f:
        text = f.read()
    section = text[text.index("## Quick start"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]


def test_the_quick_start_runs_as_written():
    names = {}
    exec(compile(quick_start_code(), "README.md (Quick start)", "exec"), names)
    x, y, dsa, paper = names["x"], names["y"], names["dsa"], names["paper"]
    assert y.shape == x.shape and x.grad is not None and x.grad.shape == x.shape
    # "the first C' = 16 channels aggregated": each of them changed, the others passed through
    assert (y[:, :16] != x[:, :16]).flatten(2).any(-1).all()
    assert torch.equal(y[:, 16:], x[:, 16:])
    for name, tensor in paper.state_dict().items():
        assert torch.equal(dsa.state_dict()[name], tensor), name
