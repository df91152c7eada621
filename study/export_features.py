"""Compute global / multistage / multiscale ELPV features with labeler's own wrappers (truth.csv order).

Preprocessing as the product: PIL RGB bilinear resize to the input size, (x - 127) / 128.
Writes $OUT/{global,multistage}.npy (float32) and multiscale.npy (float16, size limit).
"""
import os, sys, time, types
from pathlib import Path
import numpy as np, torch
from PIL import Image

sys.path.insert(0, "study/cache/pkg")
pkg = types.ModuleType("labeler"); pkg.__path__ = [str(Path("labeler").resolve())]; sys.modules["labeler"] = pkg
from labeler.embedding.networks import EfficientNetFeatures  # noqa: E402
from labeler.embedding.local_features import MultiScaleFeatures, MultiStageFeatures  # noqa: E402
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out")); OUT.mkdir(parents=True, exist_ok=True)
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
imgs = np.load("study/cache/imgs.npy")
net = EfficientNet.from_name("efficientnet-lite0")
net.load_state_dict(torch.load("study/cache/wl0/lite0.pth", map_location="cpu", weights_only=True))
base = EfficientNetFeatures(net).eval().to(dev)
models = {"global": (base, 224), "multistage": (MultiStageFeatures(base).eval(), 224),
          "multiscale": (MultiScaleFeatures(base, 224).eval(), 448)}
for name, (m, size) in models.items():
    t = time.time(); out = []
    for i in range(0, len(imgs), 64):
        x = np.stack([(np.asarray(Image.fromarray(a).convert("RGB").resize((size, size), Image.Resampling.BILINEAR),
                                  np.float32) - 127.0) / 128.0 for a in imgs[i:i + 64]])
        with torch.inference_mode():
            f, _ = m(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev))
        out.append(f.float().cpu().numpy())
    f = np.concatenate(out)
    np.save(OUT / f"{name}.npy", f.astype(np.float16 if name == "multiscale" else np.float32))
    print(name, f.shape, f"{time.time()-t:.1f}s", flush=True)
