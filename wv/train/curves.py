"""Training records: OUT/log.jsonl (one JSON object per line), TensorBoard when installed, OUT/curves.png."""

import json
from pathlib import Path

from wv.atomic import atomic_path, write_bytes

PLOT = "curves.png"
_writers: dict = {}


def append_log(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    tensorboard(path.parent, record)


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return records


def truncate_log(path: Path, step: int) -> None:
    """Keep the records up to optimizer step `step` (a resumed run writes the later ones again)."""
    if path.is_file():
        kept = [r for r in read_log(path) if r.get("step", 0) <= step]
        write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def tensorboard(folder: Path, record: dict) -> None:
    """Mirror the record to TensorBoard (OUT/tensorboard/) when the tensorboard package is installed."""
    if folder not in _writers:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            _writers[folder] = None
        else:
            _writers[folder] = SummaryWriter(str(folder / "tensorboard"))
    writer = _writers[folder]
    if writer is None:
        return
    for name, value in record.items():
        if name not in ("kind", "step", "epoch", "batch") and isinstance(value, (int, float)):
            writer.add_scalar(f"{record['kind']}/{name}", value, record["step"])
    writer.flush()


def plot(log_path: Path, out: Path) -> Path:
    """Training loss per logged step, epoch loss, and validation accuracy per epoch, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    steps = [r for r in records if r["kind"] == "train"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1, alpha=0.7, label="train loss (logged steps)")
    left.plot([r["step"] for r in epochs], [r["loss"] for r in epochs], "o-", label="epoch mean")
    left.set(xlabel="optimizer step", ylabel="loss", title="training loss")
    left.legend()
    with_val = [r for r in epochs if "val_top1" in r]
    if with_val:
        right.plot([r["epoch"] for r in with_val], [r["val_top1"] for r in with_val], "o-", label="val top-1")
        right.plot([r["epoch"] for r in with_val], [r["val_top5"] for r in with_val], "s-", label="val top-5")
        right.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="validation")
        right.legend()
    else:
        right.plot([r["step"] for r in steps], [r["lr"] for r in steps])
        right.set(xlabel="optimizer step", ylabel="learning rate", title="learning rate (no --val)")
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return out
