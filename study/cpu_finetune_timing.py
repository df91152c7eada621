"""Time `finetune_project` on CPU on a small ELPV project (N images, L random `defective` labels).

Usage: python study/cpu_finetune_timing.py N L EPOCHS  (uses /work/wt/elpv-data and the
frozen embeddings of an ingested ELPV project at $ELPV_PROJECT for the frozen check).
"""
import hashlib, json, os, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from labeler.project import Project
from labeler.labels import label_images
from labeler.embedding.finetune import finetune_project

n, n_lab, epochs = (int(a) for a in sys.argv[1:4])
T0 = time.time()
def say(m): print(f"[{time.time()-T0:6.1f}s] {m}", flush=True)
truth = pd.read_csv("/work/wt/elpv-data/truth.csv")
rng = np.random.default_rng(0)
sub = np.sort(rng.choice(len(truth), n, replace=False))
root = Path(f"/tmp/featstudy/cpu_proj_{n}")
import shutil; shutil.rmtree(root, ignore_errors=True)
proj = Project(root, create=True); st = proj.store
st.add_or_update_images([{"path": truth.path[i], "size": 1, "mtime": 1.0, "hash": hashlib.md5(truth.path[i].encode()).hexdigest()} for i in sub])
pend = st.pending_images()
st.commit_embedded([{"id": r["id"], "row": k, "width": 300, "height": 300, "top1": 0, "top1_prob": 0.1} for k, r in enumerate(pend)])
st.set_meta(image_root="/work/wt/elpv-data/images", backbone={"name": "efficientnet-lite0", "view": "whole", "features": "global"})
full = np.load(os.environ.get("ELPV_PROJECT", "/tmp/featstudy/elpvproj") + "/embeddings.npy")
idx = {p: i for i, p in enumerate(truth.path)}
proj.save_array("embeddings", np.stack([full[idx[r["path"]]] for r in st.image_table()]))
ids = {r["path"]: int(r["id"]) for r in st.image_table()}
pick = rng.choice(sub, n_lab, replace=False)
for lab in ("no", "yes"):
    label_images(proj, [ids[truth.path[i]] for i in pick if truth.defective[i] == lab], lab)
say(f"project of {n} images, {n_lab} labels; torch threads {torch.get_num_threads()}; load {os.getloadavg()}")
t = time.time()
rep = finetune_project(proj, epochs=epochs, device="cpu", holdout=0.2, progress=False, say=say)
r = {k: v for k, v in rep.__dict__.items() if k != "failures"}; r["wall_s"] = time.time() - t; r["load_after"] = os.getloadavg()
print(json.dumps(r), flush=True)
