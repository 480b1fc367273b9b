"""The trainer's meter: sums kept on the device, read back (and reset) in one transfer."""

import pytest
import torch

from wv.train.meter import Meter, Reading


def test_sums_are_exact_and_a_read_resets():
    meter = Meter(torch.device("cpu"))
    losses, kept = [2.5, 0.1, 1 / 3], [1.0, 0.5, 0.75]
    for loss, share in zip(losses, kept):
        meter.add(torch.tensor(loss, requires_grad=True) * 1, torch.tensor(share), images=16)
    # the same float64 additions a Python float running sum of the float32 values makes
    expected = sum(float(torch.tensor(v)) for v in losses), sum(float(torch.tensor(v)) for v in kept)
    assert meter.read(reset=False) == Reading(expected[0], expected[1], 3, 48)
    assert meter.read() == Reading(expected[0], expected[1], 3, 48)
    assert meter.read() == Reading(0.0, 0.0, 0, 0)
    meter.load(Reading(4.0, 1.5, 2, 32))  # a resumed run carries on from the checkpoint's sums
    meter.add(torch.tensor(1.0), torch.tensor(0.5), images=16)
    assert meter.read() == Reading(5.0, 2.0, 3, 48)


def test_adding_never_reads_the_device():
    """On the meta device a tensor has no values: adding works only if nothing is copied back."""
    meter = Meter(torch.device("meta"))
    for _ in range(3):
        assert meter.add(torch.zeros((), device="meta"), torch.ones((), device="meta"), images=8) is None
    assert (meter.batches, meter.images) == (3, 24)
    with pytest.raises((NotImplementedError, RuntimeError)):
        meter.read()


def test_a_read_is_one_transfer(monkeypatch):
    calls = []
    for name in ("tolist", "item", "cpu", "numpy", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _f=original, _n=name, **k: calls.append(_n) or _f(self, *a, **k))
    meter = Meter(torch.device("cpu"))
    for _ in range(5):
        meter.add(torch.tensor(0.5), torch.tensor(1.0), images=4)
    assert calls == []
    assert meter.read() == Reading(2.5, 5.0, 5, 20)
    assert calls == ["tolist"]
