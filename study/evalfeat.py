"""Study: score feature sets on every ELPV truth column (5-fold CV logistic regression; LOO cosine search)."""
import sys, json, time
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.metrics import accuracy_score, f1_score
from labeler.evaluate import search_scores

truth = pd.read_csv("/work/wt/elpv-data/truth.csv")
COLS = ["cell_type", "defective", "defect_level"]
Y = {c: pd.factorize(truth[c].astype(str), sort=True)[0] for c in COLS}

def prep(x):
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x

def score(x, cols=COLS, C=1.0):
    x = prep(x)
    xs = (x - x.mean(0)) / (x.std(0) + 1e-8)
    res = {}
    for c in cols:
        y = Y[c]
        pred = cross_val_predict(LogisticRegression(C=C, max_iter=2000), xs, y,
                                 cv=StratifiedKFold(5, shuffle=True, random_state=0))
        s = search_scores(x, y, k=10)
        res[c] = dict(acc=accuracy_score(y, pred), f1=f1_score(y, pred, average="macro"), p1m=s["p1_macro"], p10m=s["p10_macro"])
    return res

def fmt(name, r):
    return "| " + name + " | " + " | ".join(f"{r[c]['acc']:.3f} / {r[c]['f1']:.3f} / {r[c]['p1m']:.3f} / {r[c]['p10m']:.3f}" for c in COLS) + " |"

if __name__ == "__main__":
    print("| features | " + " | ".join(f"{c} acc / F1 / P@1m / P@10m" for c in COLS) + " |")
    for spec in sys.argv[1:]:
        # spec: file.npz:key1+key2  or file.npy
        f, _, keys = spec.partition(":")
        if f.endswith(".npy"):
            x = np.load(f)
        else:
            z = np.load(f)
            parts = [prep(z[k]) for k in keys.split("+")]
            x = np.hstack(parts)
        t = time.time()
        print(fmt(spec.split("/")[-1] + f" ({x.shape[1]}d)", score(x)), flush=True)
