"""Training speed: `wv train` (the stream, its loader workers, the trainer) beside a plain PyTorch loop
over the same images already decoded into memory, same model, batch, optimizer and threads, one run.
The ratio shows whether the loader holds the model back.

    python bench/train.py --arch resnet18 --size 96 --batch-size 64 --epochs 3

    wv train    wv.train.trainer.train on the dataset root: byte-range reads, decode, RandomResizedCrop
                + flip in --workers loader processes, uint8 batches normalised in the trainer, SGD
    in-memory   the same images, decoded and crop-resized once to uint8 tensors before the clock starts;
                each epoch a random permutation in batches: normalise, forward, backward, SGD step
Both count the images of every epoch after the first (worker start-up and warm-up excluded); the
best epoch of each side is reported, and their ratio.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wv.models import build_model, default_input  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.read import iter_samples, shard_urls  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.stream.config import SamplerConfig  # noqa: E402
from wv.stream.range_reader import decode_image  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402
from wv.train.crops import normalise  # noqa: E402
from wv.train.trainer import TrainOptions, train  # noqa: E402


def prepare(out: Path, classes: int, per_class: int, image: str) -> Path:
    source, root = out / f"train-synth-{classes}x{per_class}-{image}", out / f"train-root-{classes}x{per_class}-{image}"
    width, height = (int(v) for v in image.split("x"))
    if not (source / "ground_truth.parquet").is_file():
        write_synth(source, SynthOptions(classes=classes, per_class=per_class, val_per_class=0, noise=0.2, width=width, height=height, seed=0), workers=2)
    if not Root(root).exists():
        build(source, root, BuildOptions(split="train", shard_size=250, check="cheap"), workers=2, progress=False)
    return root


def run_wv(root: Path, args, out: Path) -> list[float]:
    """Images/s of every epoch after the first, from the run's log."""
    run = out / f"train-run-{time.time_ns()}"
    options = TrainOptions(out=str(run), arch=args.arch, image_size=args.size, epochs=args.epochs, workers=args.workers, lr=0.01, log_every=1000, device="cpu")
    summary = train(str(root), options, SamplerConfig(batch_size=args.batch_size, seed=0), progress=False, say=lambda *a: None)
    epochs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"epoch"' in line and '"kind": "epoch"' in line]
    per_epoch = summary["steps_per_rank"] // args.epochs * args.batch_size
    return [per_epoch / e["seconds"] for e in epochs[1:]]


def load_images(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image decoded once and resized + centre-cropped to size x size, as uint8 tensors."""
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
    images, labels = [], []
    for sample in iter_samples(shard_urls(str(root), "train")):
        images.append(transform(decode_image(sample["jpg"])))
        labels.append(int(sample["cls"]))
    return torch.stack(images), torch.tensor(labels)


def run_in_memory(images: torch.Tensor, labels: torch.Tensor, classes: int, args) -> list[float]:
    torch.manual_seed(0)
    model = build_model(args.arch, classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    spec = default_input(args.arch)
    rates = []
    for epoch in range(args.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(labels))
        steps = len(labels) // args.batch_size
        for step in range(steps):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss = F.cross_entropy(model(normalise(images[batch], spec["mean"], spec["std"])), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if epoch:
            rates.append(steps * args.batch_size / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--image", default="96x72", help="Synthetic image WIDTHxHEIGHT.")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=64, help="Training crop size.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="Epochs per side; the first is warm-up.")
    parser.add_argument("--workers", type=int, default=2, help="wv's loader workers.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process (both sides).")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    root = prepare(out, args.classes, args.per_class, args.image)
    images, labels = load_images(root, args.size)
    print(
        f"{len(labels):,} images ({args.image}), {args.arch} at {args.size} px, batch {args.batch_size}, "
        f"{args.threads} torch threads, wv loader workers {args.workers}, epochs {args.epochs} (first is warm-up)"
    )
    memory = run_in_memory(images, labels, args.classes, args)
    wv = run_wv(root, args, out)
    print(f"  in-memory loop  {max(memory):8.1f} img/s  (epochs: {', '.join(f'{r:.1f}' for r in memory)})")
    print(f"  wv train        {max(wv):8.1f} img/s  (epochs: {', '.join(f'{r:.1f}' for r in wv)})")
    print(f"ratio wv / in-memory: {max(wv) / max(memory):.3f} (best epochs)")


if __name__ == "__main__":
    main()
