import io, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from torchvision import transforms as T
torch.set_num_threads(1)
from wv.jpeg import ScaledRandomResizedCrop
from wv.shards import images
from wv.shards.images import prepare_image
from wv.stream.range_reader import open_image
folder = Path(sys.argv[1])
data = [p.read_bytes() for p in sorted(folder.rglob("*.jpg"))[:int(sys.argv[2])]]
full_t = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.PILToTensor()])
ours = ScaledRandomResizedCrop(224)
def a(): [full_t(Image.open(io.BytesIO(d)).convert("RGB")) for d in data]
def b(): [ours(open_image(d)) for d in data]
def dec(): [Image.open(io.BytesIO(d)).convert("RGB") for d in data]
def chk8():
    images.CHECK_REDUCE = 8; [prepare_image(d, "full") for d in data]
def chk1():
    images.CHECK_REDUCE = 1; [prepare_image(d, "full") for d in data]
res = {}
for r in range(3):
    for name, f in (("full-size decode+augment", a), ("wv scaled decode+augment", b), ("decode alone", dec), ("check full at 1/8", chk8), ("check full at 1/1", chk1)):
        torch.manual_seed(r); t = time.process_time(); f(); res.setdefault(name, []).append((time.process_time() - t) * 1000 / len(data))
for k, v in res.items(): print(f"{k:<28} median {np.median(v):.3f} CPU ms/image  (rounds {', '.join(f'{x:.3f}' for x in v)})")
print("scaled / full-size augment speed-up:", round(np.median(res["full-size decode+augment"]) / np.median(res["wv scaled decode+augment"]), 2))
print("check at 1/8 vs decode alone (rate ratio):", round(np.median(res["decode alone"]) / np.median(res["check full at 1/8"]), 2))
