"""Feature + fine-tuning study on ELPV, run on one GPU (or CPU, slowly).

Inputs (carried): study/cache/imgs.npy (N x 300 x 300 uint8, truth.csv row order),
study/cache/truth.csv, study/cache/w/lite{0,1}.pth, study/cache/pkg (efficientnet_lite_pytorch).
Writes JSON tables and a few feature arrays to $OUT.

Protocols (identical for every candidate):
* frozen features: L2-normalise each block, concatenate, standardise; 5-fold stratified CV
  multinomial logistic regression (L2, C=1, LBFGS) -> accuracy, macro-F1; leave-one-out
  cosine search -> macro P@1, macro P@10 (mean over classes of the per-query precision).
* fine-tuning: N labelled images chosen truth-blind (k-center greedy on frozen lite0
  global features, or uniform random); train; evaluate on the remaining images only.
"""
import json, os, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, "study/cache/pkg")
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out"))
OUT.mkdir(parents=True, exist_ok=True)
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
T0 = time.time()
if dev.type == "cpu":
    torch.set_num_threads(1)
PARTS = set(sys.argv[1].split(",")) if len(sys.argv) > 1 else {"frozen", "finetune"}


def log(*a):
    print(f"[{time.time()-T0:6.1f}s]", *a, flush=True)


truth = pd.read_csv("study/cache/truth.csv")
COLS = ["cell_type", "defective", "defect_level"]
Y = {c: torch.as_tensor(pd.factorize(truth[c].astype(str), sort=True)[0], device=dev) for c in COLS}
IMGS = torch.from_numpy(np.load("study/cache/imgs.npy")).to(dev)  # (N, 300, 300) uint8
SMOKE = int(os.environ.get("SMOKE", 0))
if SMOKE:
    IMGS = IMGS[:SMOKE]
    truth = truth.iloc[:SMOKE]
    Y = {c: v[:SMOKE] for c, v in Y.items()}
N = IMGS.shape[0]
log("images", tuple(IMGS.shape), "device", dev)


def load_net(name):
    net = EfficientNet.from_name(f"efficientnet-{name}")
    net.load_state_dict(torch.load(f"study/cache/wl{name[-1]}/{name}.pth", map_location="cpu", weights_only=True))
    return net.eval().to(dev)


def batch_input(idx, size, k=0):
    """uint8 gray -> (B,3,size,size) float, TF-lite normalisation; k: D4 transform index."""
    x = IMGS[idx].float()[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = d4(x, k)
    return ((x - 127.0) / 128.0).expand(-1, 3, -1, -1).contiguous()


def d4(x, k):
    """The 8 symmetries of the square: k in 0..7 (rot90 k%4 times, then flip if k>=4)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def stage_ids(net):
    ends = {}
    for i, b in enumerate(net._blocks):
        ends[b._block_args.output_filters] = i
    s3 = max(v for c, v in ends.items() if c in (40,))
    s5 = max(v for c, v in ends.items() if c in (112,))
    return s3, s5, len(net._blocks) - 1


def gem(x, p=3.0):
    """GeM pooling (Radenovic et al. 2018): (mean x^p)^(1/p) over H, W on x clamped at 1e-6."""
    return x.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p)


@torch.no_grad()
def frozen_pooled(net, size, bs=128):
    s3, s5, s7 = stage_ids(net)
    out = {}
    for i in range(0, N, bs):
        idx = torch.arange(i, min(i + bs, N), device=dev)
        h = net._swish(net._bn0(net._conv_stem(batch_input(idx, size))))
        got = {}
        for j, blk in enumerate(net._blocks):
            h = blk(h)
            if j == s3: got["s3"] = h
            if j == s5: got["s5"] = h
            if j == s7: got["s7"] = h
        got["head"] = net._swish(net._bn1(net._conv_head(h)))
        for k, v in got.items():
            for pk, pv in (("gap", v.mean((2, 3))), ("max", v.amax((2, 3))), ("gem", gem(v))):
                out.setdefault(f"{k}_{pk}", []).append(pv.float())
    return {k: torch.cat(v) for k, v in out.items()}


def l2n(x):
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


def fit_lr(X, y, k, C=1.0, iters=60):
    W = torch.zeros(X.shape[1], k, device=dev, requires_grad=True)
    b = torch.zeros(k, device=dev, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(X @ W + b, y, reduction="sum") + 0.5 / C * (W * W).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return W.detach(), b.detach()


def macro_f1(y, p, k):
    f = []
    for c in range(k):
        tp = ((p == c) & (y == c)).sum().item(); fp = ((p == c) & (y != c)).sum().item(); fn = ((p != c) & (y == c)).sum().item()
        f.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f))


def standardise(Xtr, Xte):
    m, s = Xtr.mean(0), Xtr.std(0) + 1e-6
    return (Xtr - m) / s, (Xte - m) / s


def lr_cv(X, y, folds=5, seed=0):
    k = int(y.max()) + 1
    g = np.random.default_rng(seed)
    yn = y.cpu().numpy()
    fold = np.empty(len(yn), int)
    for c in range(k):  # stratified fold assignment
        ids = np.flatnonzero(yn == c); g.shuffle(ids); fold[ids] = np.arange(len(ids)) % folds
    fold = torch.as_tensor(fold, device=dev)
    pred = torch.empty_like(y)
    for f in range(folds):
        tr, te = fold != f, fold == f
        Xtr, Xte = standardise(X[tr], X[te])
        W, b = fit_lr(Xtr, y[tr], k)
        pred[te] = (Xte @ W + b).argmax(1)
    return (pred == y).float().mean().item(), macro_f1(y, pred, k)


def search_macro(X, y, among=None, k=10):
    """LOO cosine search, macro P@1 / P@k; ``among``: bool mask of images that are both queries and database."""
    if among is not None:
        X, y = X[among], y[among]
    Z = l2n(X)
    S = Z @ Z.T
    S.fill_diagonal_(-2)
    nn = S.topk(k, dim=1).indices
    rel = (y[nn] == y[:, None]).float()
    p1, pk = rel[:, 0], rel.mean(1)
    cls = torch.unique(y)
    return (float(np.mean([p1[y == c].mean().item() for c in cls])), float(np.mean([pk[y == c].mean().item() for c in cls])))


def score_all(X):
    X = X.float()
    r = {}
    for c in COLS:
        acc, f1 = lr_cv(X, Y[c])
        p1, p10 = search_macro(X, Y[c])
        r[c] = dict(acc=round(acc, 4), f1=round(f1, 4), p1m=round(p1, 4), p10m=round(p10, 4))
    return r


def combo(P, keys):
    return torch.cat([l2n(P[k]) for k in keys], 1)


# ------------------------------------------------------------------ frozen study
results = {"frozen": {}, "finetune": {}}
P0 = None
if "frozen" in PARTS:
    combos = {
        "global (head GAP)": ["head_gap"],
        "head GeM": ["head_gem"],
        "head max": ["head_max"],
        "s5 GAP": ["s5_gap"], "s5 max": ["s5_max"],
        "s7 GAP": ["s7_gap"],
        "s3+s5+head GAP": ["s3_gap", "s5_gap", "head_gap"],
        "s5+head GeM": ["s5_gem", "head_gem"],
        "s5 max+head GeM": ["s5_max", "head_gem"],
        "s3 max+s5 max+head GeM": ["s3_max", "s5_max", "head_gem"],
        "s5 GAP+max, head GAP+GeM": ["s5_gap", "s5_max", "head_gap", "head_gem"],
    }
    MAIN = {"global (head GAP)", "head GeM", "s5 max+head GeM", "s3 max+s5 max+head GeM", "s5 GAP+max, head GAP+GeM"}
    pooled = {}
    for name, size in (("lite0", 224), ("lite0", 448), ("lite1", 240), ("lite1", 448))[: 2 if SMOKE else 4]:
        if name not in os.environ.get("NETS", "lite0,lite1") or not Path(f"study/cache/wl{name[-1]}/{name}.pth").exists():
            continue
        net = load_net(name)
        t = time.time()
        P = frozen_pooled(net, size)
        torch.cuda.synchronize() if dev.type == "cuda" else None
        log(name, size, f"extract {time.time()-t:.1f}s")
        pooled[(name, size)] = P
        for cname, keys in combos.items():
            if (name, size) != ("lite0", 224) and cname not in MAIN:
                continue
            r = score_all(combo(P, keys))
            results["frozen"][f"{name}@{size} {cname}"] = r
            log(f"{name}@{size} {cname}", json.dumps(r))
    # multi-scale: 224 + 448 of lite0
    if ("lite0", 224) in pooled and ("lite0", 448) in pooled:
        a, b = pooled[("lite0", 224)], pooled[("lite0", 448)]
        for cname, X in {"ms 224+448 head GeM": torch.cat([l2n(a["head_gem"]), l2n(b["head_gem"])], 1),
                         "ms 224+448 s5 max+head GeM": torch.cat([combo(a, ["s5_max", "head_gem"]), combo(b, ["s5_max", "head_gem"])], 1),
                         "ms 224+448 head GAP": torch.cat([l2n(a["head_gap"]), l2n(b["head_gap"])], 1)}.items():
            r = score_all(X)
            results["frozen"][f"lite0 {cname}"] = r
            log(f"lite0 {cname}", json.dumps(r))
    P0 = pooled.get(("lite0", 224))
    keep = {}
    for (name, size), P in pooled.items():
        for k in ("head_gap", "head_gem", "s5_max", "s5_gap", "s3_max"):
            keep[f"{name}_{size}_{k}"] = P[k].cpu().numpy().astype(np.float16)
    np.savez_compressed(OUT / "pooled.npz", **keep)
    json.dump(results, open(OUT / "results.json", "w"), indent=1)

# ------------------------------------------------------------------ fine-tuning study
import copy  # noqa: E402


def kcenter(F_, n, seed):
    """k-center greedy (Sener & Savarese 2018) on L2-normalised features; random first point."""
    Z = l2n(F_)
    g = np.random.default_rng(seed)
    sel = [int(g.integers(len(Z)))]
    d = 1 - Z @ Z[sel[0]]
    for _ in range(n - 1):
        i = int(d.argmax()); sel.append(i)
        d = torch.minimum(d, 1 - Z @ Z[i])
    return np.array(sel)


class Tail(torch.nn.Module):
    """Blocks after stage 5 + head conv of an EfficientNet-Lite, then GAP -> (emb 1280, logits)."""

    def __init__(self, net, s5, k):
        super().__init__()
        self.blocks = torch.nn.ModuleList(net._blocks[s5 + 1:])
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
        self.fc = torch.nn.Linear(net._conv_head.out_channels, k)
        self.drop = torch.nn.Dropout(0.2)

    def embed(self, h):
        for b in self.blocks:
            h = b(h)
        h = self.act(self.bn1(self.conv_head(h)))
        return h.mean((2, 3))

    def forward(self, h):
        e = self.embed(h)
        return e, self.fc(self.drop(e))


@torch.no_grad()
def s5_maps(net, s5, size=224, k=0, bs=256):
    out = []
    for i in range(0, N, bs):
        idx = torch.arange(i, min(i + bs, N), device=dev)
        h = net._swish(net._bn0(net._conv_stem(batch_input(idx, size, k))))
        for j in range(s5 + 1):
            h = net._blocks[j](h)
        out.append(h.half())
    return torch.cat(out)


def finetune(net, s5, maps_aug, lab, y, k, epochs=30, bs=32, lr=1e-3, aug="image", seed=0):
    torch.manual_seed(seed)
    tail = Tail(copy.deepcopy(net), s5, k).to(dev)
    tail.train()
    for m in tail.modules():  # keep BatchNorm statistics frozen: tiny label sets
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    opt = torch.optim.AdamW([{"params": tail.fc.parameters(), "lr": lr * 10},
                             {"params": [p for n_, p in tail.named_parameters() if not n_.startswith("fc")], "lr": lr}],
                            weight_decay=1e-4)
    lab_t = torch.as_tensor(lab, device=dev)
    steps = epochs * max(1, int(np.ceil(len(lab) / bs)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr * 10, lr], total_steps=steps, pct_start=0.1)
    cw = torch.bincount(y[lab_t], minlength=k).float().clamp(min=1)
    cw = (cw.sum() / cw / k) ** 0.5  # mild class re-weighting (sqrt of inverse frequency)
    g = torch.Generator(device="cpu").manual_seed(seed)
    for ep in range(epochs):
        perm = lab_t[torch.randperm(len(lab_t), generator=g).to(dev)]
        for i in range(0, len(perm), bs):
            idx = perm[i:i + bs]
            if aug == "image":
                kk = torch.randint(0, 8, (len(idx),), generator=g).to(dev)
                h = maps_aug[kk, idx].float()
            elif aug == "map":
                h = maps_aug[0][idx].float()
                kk = int(torch.randint(0, 8, (1,), generator=g))
                h = d4(h, kk)
            else:
                h = maps_aug[0][idx].float()
            _, logits = tail(h)
            loss = F.cross_entropy(logits, y[idx], weight=cw, label_smoothing=0.1)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    tail.eval()
    with torch.no_grad():
        E = torch.cat([tail.embed(maps_aug[0][i:i + 512].float()) for i in range(0, N, 512)])
        # test-time: average embeddings over the 8 symmetries (exact maps)
        if maps_aug.shape[0] == 8:
            E8 = torch.stack([torch.cat([tail.embed(maps_aug[t][i:i + 512].float()) for i in range(0, N, 512)]) for t in range(8)]).mean(0)
        else:
            E8 = E
        logits = tail.fc(E)
    return E, E8, logits


def eval_split(X, y, lab, k):
    """LR trained on the labelled rows only, scored on the rest; held-out macro P@1/P@10."""
    rest = torch.ones(N, dtype=torch.bool, device=dev); rest[torch.as_tensor(lab, device=dev)] = False
    labm = ~rest
    Xtr, Xte = standardise(X[labm].float(), X[rest].float())
    W, b = fit_lr(Xtr, y[labm], k)
    pred = (Xte @ W + b).argmax(1)
    p1, p10 = search_macro(X.float(), y, among=rest)
    return dict(acc=round((pred == y[rest]).float().mean().item(), 4), f1=round(macro_f1(y[rest], pred, k), 4),
                p1m_heldout=round(p1, 4), p10m_heldout=round(p10, 4))


if "finetune" in PARTS:
    net = load_net("lite0")
    _, s5, _ = stage_ids(net)
    t = time.time()
    maps = torch.stack([s5_maps(net, s5, k=kk) for kk in range(8)])  # (8, N, 112, 14, 14) fp16
    log("s5 maps for 8 symmetries", tuple(maps.shape), f"{time.time()-t:.1f}s")
    if P0 is None:
        P0 = frozen_pooled(net, 224)
    base = P0["head_gap"]
    frozen_best = {"global": base, "s5max+headGeM": combo(P0, ["s5_max", "head_gem"])}
    EP = int(os.environ.get("EPOCHS", 30))
    runs = []
    plan = [(c, n, sel, seed, "image") for c in COLS for n in (200, 300, 400) for sel in ("kcenter", "random") for seed in (0,)]
    plan += [("defective", 200, "kcenter", 1, "image"), ("defective", 200, "random", 1, "image"),
             ("defective", 200, "kcenter", 0, "map"), ("defective", 200, "kcenter", 0, "none"),
             ("defective", 400, "kcenter", 0, "map")]
    if SMOKE:
        plan = [(c, SMOKE // 2, sel, 0, aug) for c, _, sel, _, aug in plan[:2] + plan[-3:-1]]
    for c, n, sel, seed, aug in plan:
        y = Y[c]; k = int(y.max()) + 1
        lab = kcenter(base, n, seed) if sel == "kcenter" else np.random.default_rng(seed).choice(N, n, replace=False)
        t = time.time()
        E, E8, logits = finetune(net, s5, maps, lab, y, k, epochs=EP, aug=aug, seed=seed)
        if dev.type == "cuda": torch.cuda.synchronize()
        dt = time.time() - t
        rest = torch.ones(N, dtype=torch.bool, device=dev); rest[torch.as_tensor(lab, device=dev)] = False
        head_acc = (logits.argmax(1)[rest] == y[rest]).float().mean().item()
        r = dict(column=c, n=n, select=sel, seed=seed, aug=aug, epochs=EP, train_s=round(dt, 1),
                 head_acc=round(head_acc, 4), head_f1=round(macro_f1(y[rest], logits.argmax(1)[rest], k), 4))
        for fname, X in frozen_best.items():
            r["frozen " + fname] = eval_split(X, y, lab, k)
        r["finetuned"] = eval_split(E, y, lab, k)
        r["finetuned tta8"] = eval_split(E8, y, lab, k)
        runs.append(r)
        log(json.dumps(r))
        results["finetune"] = runs
        json.dump(results, open(OUT / "results.json", "w"), indent=1)
log("done")
