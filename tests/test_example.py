"""The synthetic training example learns the order of events with DSA and stays at chance without."""
import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_synthetic.py"


def test_dsa_learns_the_order_of_events():
    spec = importlib.util.spec_from_file_location("train_synthetic", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    _, without = example.train(dsa=False, steps=150)
    curve, with_dsa = example.train(dsa=True, steps=150)
    assert without < 0.65, f"without DSA the order is invisible, yet accuracy was {without:.1%}"
    assert with_dsa > 0.9, f"with DSA the order should be learnt, accuracy was {with_dsa:.1%}"
    assert sum(curve[-25:]) < sum(curve[:25])
