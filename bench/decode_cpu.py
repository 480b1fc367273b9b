"""CPU time per image, one process, 3 interleaved rounds: the trainer's crop with the reduced-scale
decode (wv.jpeg) vs torchvision's on a full decode, and the build's --check full at 1/8 vs 1/1 scale.
Process CPU time moves much less than wall time when other jobs share the cores.

    python bench/decode_cpu.py FOLDER_OF_JPEGS 300
"""

import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wv.shards import images  # noqa: E402
from wv.shards.images import prepare_image  # noqa: E402
from wv.train.crops import ScaledRandomResizedCrop  # noqa: E402


def check(data: list, reduce: int) -> None:
    images.CHECK_REDUCE = reduce
    for d in data:
        prepare_image(d, "full")


def main() -> None:
    torch.set_num_threads(1)
    data = [p.read_bytes() for p in sorted(Path(sys.argv[1]).rglob("*.jpg"))[: int(sys.argv[2])]]
    full = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.PILToTensor()])
    ours = ScaledRandomResizedCrop(224)
    methods = {
        "full-size decode+augment": lambda: [full(Image.open(io.BytesIO(d)).convert("RGB")) for d in data],
        "wv scaled decode+augment": lambda: [ours(d) for d in data],  # on the bytes, as the stream calls it
        "decode alone": lambda: [Image.open(io.BytesIO(d)).convert("RGB") for d in data],
        "check full at 1/8": lambda: check(data, 8),
        "check full at 1/1": lambda: check(data, 1),
    }
    results = {}
    for round_ in range(3):
        for name, run in methods.items():
            torch.manual_seed(round_)
            start = time.process_time()
            run()
            results.setdefault(name, []).append((time.process_time() - start) * 1000 / len(data))
    for name, values in results.items():
        print(f"{name:<28} median {np.median(values):.3f} CPU ms/image  (rounds {', '.join(f'{x:.3f}' for x in values)})")
    median = {name: np.median(values) for name, values in results.items()}
    print(f"scaled / full-size augment speed-up: {median['full-size decode+augment'] / median['wv scaled decode+augment']:.2f}")
    print(f"check at 1/8 vs decode alone (rate ratio): {median['decode alone'] / median['check full at 1/8']:.2f}")


if __name__ == "__main__":
    main()
