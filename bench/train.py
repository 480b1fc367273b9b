"""Training speed: `wv train` (the stream, its loader workers, the trainer) beside a plain PyTorch loop
over the same images already decoded into memory, same model, batch, optimizer and threads, one run.
The ratio shows whether the loader holds the model back.

    python bench/train.py --arch resnet18 --size 64 --batch-size 64 --epochs 5

    wv train    wv.train.trainer's Trainer on the dataset root: byte-range reads, decode, RandomResizedCrop
                + flip in --workers persistent loader processes, uint8 batches normalised in the trainer, SGD
    in-memory   the same images, decoded and crop-resized once to uint8 tensors before the clock starts;
                each epoch a random permutation in batches: normalise, forward, backward, SGD step
The two sides are interleaved: after each wv epoch (and its end: validation, none here, and the
checkpoint) one in-memory epoch runs in the same process, its own model, so a burst of load from
elsewhere hits both sides alike. wv's loader workers start the next epoch's first batches during the
epoch end, as in a real run (at most prefetch_factor x workers batches); the in-memory epoch starts
once they are idle, so they take no CPU from it. The first epoch of each side is a
warm-up. Per side: images/s of each epoch (wall clock: wv's is the epoch's `seconds` in log.jsonl,
its batches only), the best and the median; CPU ms per image of the epochs (this process, plus wv's
loader workers); wv's epoch end in seconds. Ratios: of the best epochs, and the median of the
per-epoch ratios (wv epoch e / in-memory epoch e).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measuring import running_children_seconds  # noqa: E402

from wv.models import build_model, default_input  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.read import iter_samples, shard_urls  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.stream.config import SamplerConfig  # noqa: E402
from wv.stream.range_reader import decode_image  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402
from wv.train import distributed  # noqa: E402
from wv.train.crops import normalise  # noqa: E402
from wv.train.trainer import Trainer, TrainOptions, check_options  # noqa: E402


def prepare(out: Path, classes: int, per_class: int, image: str) -> Path:
    source, root = out / f"train-synth-{classes}x{per_class}-{image}", out / f"train-root-{classes}x{per_class}-{image}"
    width, height = (int(v) for v in image.split("x"))
    if not (source / "ground_truth.parquet").is_file():
        write_synth(source, SynthOptions(classes=classes, per_class=per_class, val_per_class=0, noise=0.2, width=width, height=height, seed=0), workers=2)
    if not Root(root).exists():
        build(source, root, BuildOptions(split="train", shard_size=250, check="cheap"), workers=2, progress=False)
    return root


def load_images(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image decoded once and resized + centre-cropped to size x size, as uint8 tensors."""
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
    images, labels = [], []
    for sample in iter_samples(shard_urls(str(root), "train")):
        images.append(transform(decode_image(sample["jpg"])))
        labels.append(int(sample["cls"]))
    return torch.stack(images), torch.tensor(labels)


class InMemory:
    """The plain loop: its own model, optimizer and permutation generator; one epoch per call."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: int, args):
        torch.manual_seed(0)
        self.images, self.labels, self.batch_size = images, labels, args.batch_size
        self.model = build_model(args.arch, classes)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.spec = default_input(args.arch)
        self.generator = torch.Generator().manual_seed(0)

    def epoch(self) -> dict:
        """One epoch: its images, wall seconds and CPU seconds."""
        self.model.train()
        started, cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(len(self.labels), generator=self.generator)
        steps = len(self.labels) // self.batch_size
        for step in range(steps):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            loss = F.cross_entropy(self.model(normalise(self.images[batch], self.spec["mean"], self.spec["std"])), self.labels[batch])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"images": steps * self.batch_size, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


class Interleaved(Trainer):
    """wv's trainer, unchanged, with one in-memory epoch after each of its epochs (and figures of both)."""

    def __init__(self, *args, memory: InMemory, **kw):
        super().__init__(*args, **kw)
        self.memory, self.wv, self.other = memory, [], []

    def run_epoch(self) -> None:
        self.marks = [len(self.stream) * self.sampler.batch_size, time.process_time(), running_children_seconds()]
        super().run_epoch()  # its batches, then end_epoch
        wait_for_idle_workers()
        self.other.append(self.memory.epoch())

    def end_epoch(self, epoch: int, seconds: float) -> None:
        images, cpu, workers = self.marks
        record = {"images": images, "seconds": seconds, "cpu": time.process_time() - cpu, "workers": running_children_seconds() - workers}
        started = time.perf_counter()
        super().end_epoch(epoch, seconds)
        self.wv.append({**record, "end": time.perf_counter() - started})


def wait_for_idle_workers(poll: float = 0.05, limit: float = 10.0) -> None:
    """Until wv's loader workers stop using CPU (they make the next epoch's first batches, up to
    prefetch_factor x workers, during the epoch end): the in-memory epoch then runs without them."""
    last, waited = running_children_seconds(), 0.0
    while waited < limit:
        time.sleep(poll)
        waited += poll
        now = running_children_seconds()
        if now == last:
            return
        last = now


def summary_line(name: str, epochs: list[dict]) -> str:
    rates = [e["images"] / e["seconds"] for e in epochs]
    cpu = [1000 * (e["cpu"] + e.get("workers", 0.0)) / e["images"] for e in epochs]
    line = f"  {name:<15} best {max(rates):7.1f} img/s, median {statistics.median(rates):7.1f}  (epochs: {', '.join(f'{r:.1f}' for r in rates)})"
    line += f"; CPU median {statistics.median(cpu):.2f} ms/img"
    if "workers" in epochs[0]:
        line += f" (loader workers {statistics.median(1000 * e['workers'] / e['images'] for e in epochs):.2f})"
        line += f"; epoch end median {statistics.median(e['end'] for e in epochs):.2f} s"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--image", default="96x72", help="Synthetic image WIDTHxHEIGHT.")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=64, help="Training crop size.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5, help="Epochs per side, interleaved; the first is warm-up.")
    parser.add_argument("--workers", type=int, default=2, help="wv's loader workers.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process (both sides).")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is warm-up)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    root = prepare(out, args.classes, args.per_class, args.image)
    images, labels = load_images(root, args.size)
    print(
        f"{len(labels):,} images ({args.image}), {args.arch} at {args.size} px, batch {args.batch_size}, {args.threads} torch threads, "
        f"wv loader workers {args.workers}, epochs {args.epochs} per side, interleaved (first is warm-up); load average {os.getloadavg()[0]:.2f}"
    )
    memory = InMemory(images, labels, args.classes, args)
    options = TrainOptions(out=str(out / f"train-run-{time.time_ns()}"), arch=args.arch, image_size=args.size, epochs=args.epochs, workers=args.workers, lr=0.01, log_every=1000, device="cpu")
    check_options(options)
    world = distributed.start(options.device)
    try:
        trainer = Interleaved(str(root), options, SamplerConfig(batch_size=args.batch_size, seed=0), world, False, lambda *a: None, memory=memory)
        trainer.run()
    finally:
        distributed.stop(world)
    wv, other = trainer.wv[1:], trainer.other[1:]
    print(summary_line("in-memory loop", other))
    print(summary_line("wv train", wv))
    ratios = [(w["images"] / w["seconds"]) / (m["images"] / m["seconds"]) for w, m in zip(wv, other)]
    best = max(w["images"] / w["seconds"] for w in wv) / max(m["images"] / m["seconds"] for m in other)
    print(f"ratio wv / in-memory: best epochs {best:.3f}, median of per-epoch ratios {statistics.median(ratios):.3f} (epochs: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
