"""Time `finetune_project` (labeler's own code) on ELPV: on the GPU, then on 2 CPU cores.

Builds a project from the decoded images without running ingest (no UMAP/HDBSCAN on the
device): catalogue rows, frozen global embeddings from labeler's extraction loop, 200
random labels (seed 0) of the `defective` truth column. Prints timestamps as it goes.
"""
import os, sys, time, types, json, hashlib
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image

sys.path.insert(0, "study/cache/pkg")
sys.modules.setdefault("tomli_w", types.SimpleNamespace(dumps=lambda d: "", dump=lambda d, f: None))
pkg = types.ModuleType("labeler"); pkg.__path__ = [str(Path("labeler").resolve())]; sys.modules["labeler"] = pkg
T0 = time.time()
def say(m): print(f"[{time.time()-T0:6.1f}s] {m}", flush=True)
OUT = Path(os.environ.get("OUT", "/tmp/out"))
import torch  # noqa
from labeler.project import Project  # noqa
from labeler.labels import label_images  # noqa
from labeler.embedding.backbones import load_backbone  # noqa
from labeler.embedding.local_features import embed_project  # noqa
from labeler.embedding.finetune import finetune_project  # noqa

truth = pd.read_csv("study/cache/truth.csv")
imgs = np.load("study/cache/imgs.npy")
d = Path("/tmp/elpv/images"); d.mkdir(parents=True, exist_ok=True)
for p, a in zip(truth.path, imgs):
    Image.fromarray(a).save(d / p, compress_level=1)
say("wrote pngs")
proj = Project("/tmp/elpv/proj", create=True)
st = proj.store
st.add_or_update_images([{"path": p, "size": 1, "mtime": 1.0, "hash": hashlib.md5(p.encode()).hexdigest()} for p in truth.path])
pend = st.pending_images()
st.commit_embedded([{"id": r["id"], "row": n, "width": 300, "height": 300, "top1": 0, "top1_prob": 0.1} for n, r in enumerate(pend)])
st.set_meta(image_root=str(d), backbone={"name": "efficientnet-lite0", "view": "whole", "features": "global"})
bb = load_backbone("efficientnet-lite0", device="cuda")
t = time.time(); emb, fail = embed_project(proj, bb, device="cuda", batch_size=64, num_workers=8, progress=False)
say(f"frozen embeddings on GPU: {emb.shape} in {time.time()-t:.1f}s")
proj.save_array("embeddings", emb)
ids = {r["path"]: int(r["id"]) for r in st.image_table()}
rng = np.random.default_rng(0)
pick = rng.choice(len(truth), 200, replace=False)
for lab in ("no", "yes"):
    sel = [ids[truth.path[i]] for i in pick if truth.defective[i] == lab]
    label_images(proj, sel, lab)
res = {}
for dev in ("cuda", "cpu"):
    if dev == "cpu":
        os.sched_setaffinity(0, {0, 1}); torch.set_num_threads(2)
    t = time.time()
    rep = finetune_project(proj, epochs=30, device=dev, holdout=0.2, progress=False, say=say, activate=False)
    r = {k: v for k, v in rep.__dict__.items() if k != "failures"}
    r["wall_s"] = time.time() - t
    res[dev] = r
    say(json.dumps(r))
    json.dump(res, open(OUT / "timing.json", "w"), indent=1)
