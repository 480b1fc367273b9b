"""Running sums of training figures, kept on the device so that a training step never waits for it.

`add` queues two additions on the device (the batch's loss and its share of samples with a gradient)
and counts batches and images on the host; `read` copies the sums back in one transfer (the only
device sync) and returns them as Python numbers. The trainer holds two: its logging window (read at
--log-every) and its epoch totals (read at checkpoints and at the epoch's end).
"""

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Reading:
    """A meter's sums: loss and kept share summed over `batches` batches of `images` images in all."""

    loss: float
    kept: float
    batches: int
    images: int


@dataclass
class Meter:
    device: torch.device
    batches: int = 0
    images: int = 0
    sums: torch.Tensor = field(init=False, repr=False)  # loss, kept share

    def __post_init__(self) -> None:
        # float64: the sums are as exact as Python floats (MPS has no float64)
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.sums = torch.zeros(2, dtype=dtype, device=self.device)

    def add(self, loss: torch.Tensor, kept: torch.Tensor, images: int) -> None:
        """One batch: its loss and kept share as 0-d device tensors (never read here), its image count."""
        self.sums += torch.stack((loss.detach().to(self.sums.dtype), kept.detach().to(self.sums.dtype)))
        self.batches += 1
        self.images += images

    def read(self, reset: bool = True) -> Reading:
        """The sums as Python numbers (one device sync); by default the meter starts again from zero."""
        loss, kept = self.sums.tolist()
        reading = Reading(loss, kept, self.batches, self.images)
        if reset:
            self.reset()
        return reading

    def reset(self) -> None:
        self.sums.zero_()
        self.batches, self.images = 0, 0

    def load(self, reading: Reading) -> None:
        """Carry on from saved sums (a resumed run)."""
        self.sums.copy_(torch.tensor([reading.loss, reading.kept], dtype=self.sums.dtype))
        self.batches, self.images = int(reading.batches), int(reading.images)
