"""DeepPCB as a second labelled collection: crops by defect type plus defect-free crops.

DeepPCB (https://github.com/tangsanli5201/DeepPCB, MIT licence; Tang et al., "On-line PCB
Defect Detector On A New PCB Defect Dataset", 2019) holds 1,500 pairs of binarised
640 x 640 grayscale PCB images in 11 folders ``PCBData/groupGGGGG/``: a tested image
``GGGGG/<id>_test.jpg`` with 3 to 12 defects, its aligned defect-free template
``GGGGG/<id>_temp.jpg``, and the annotation ``GGGGG_not/<id>.txt``, one line per defect
``x1 y1 x2 y2 type`` (commas or spaces; type 1 open, 2 short, 3 mousebite, 4 spur,
5 copper (spurious copper), 6 pin-hole). Each group folder is cut from one board
scan, so the group is the physical part: benchmarks leave a whole board out with it.

This script writes, from a clone of that repository (or a ``git archive`` of it):

- ``OUT/images/<id>_<nn>.png``: ``--crop`` x ``--crop`` grayscale crops. A defect crop
  is a window around one annotated defect box, its centre moved by at most
  ``--jitter`` pixels (seeded) so the defect is not always in the middle; a box larger
  than the window minus a margin gets a larger window, resized to ``--crop``. A window
  that touches a box of another defect type is skipped (its label would be ambiguous).
  A defect-free crop (label ``ok``) is a random window of a tested image that touches
  no annotated box (``--ok-source test``, default: the same images, the same JPEG
  pipeline as the defect crops, so nothing but the defect tells them apart) or of the
  template (``--ok-source template``).
- ``OUT/truth.csv``: ``path,label,defective,group,split,source,box`` with ``label`` one
  of open, short, mousebite, spur, copper, pin-hole, ok; ``defective`` yes/no;
  ``group`` the board (group folder); ``split`` DeepPCB's own trainval/test list;
  ``source`` the 640 x 640 image the crop came from; ``box`` the defect's box in the
  crop's pixels ``x,y,w,h`` (empty for ok), e.g. for region-search benchmarks.

Per board at most ``--per-board`` crops of each defect type and ``--ok-per-board``
defect-free crops (default 2 x per-board), drawn with ``--seed``: the defaults give
about 2,300 crops. Nothing is downloaded; the output is the same for the same
arguments and input.

Reproduce (from the repository root)::

    git clone https://github.com/tangsanli5201/DeepPCB ../DeepPCB
    python benchmarks/data/prepare_deeppcb.py --repo ../DeepPCB --out data/deeppcb
    labeler ingest data/deeppcb/images --project data/projects/deeppcb
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

TYPES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}
OK = "ok"


def read_boxes(path: Path) -> list[tuple[int, int, int, int, int]]:
    """Annotation file -> [(x1, y1, x2, y2, type)], type in 1..6 (other lines skipped)."""
    out = []
    for line in path.read_text().splitlines():
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        if len(parts) != 5:
            continue
        x1, y1, x2, y2, t = (int(float(p)) for p in parts)
        if t in TYPES and x2 > x1 and y2 > y1:
            out.append((x1, y1, x2, y2, t))
    return out


def find_pairs(repo: Path) -> list[dict]:
    """Every annotated tested image of ``repo``: group, id, test/template/annotation paths, split."""
    data = repo / "PCBData"
    if not data.is_dir():
        raise SystemExit(f"{data} not found: --repo must be a clone of tangsanli5201/DeepPCB")
    split = {}
    for name in ("trainval", "test"):
        lst = data / f"{name}.txt"
        if lst.exists():
            for line in lst.read_text().split():
                if line.endswith(".jpg"):
                    split[Path(line).stem] = name
    pairs = []
    for gdir in sorted(p for p in data.iterdir() if p.is_dir() and p.name.startswith("group")):
        for ann in sorted(gdir.glob("*_not/*.txt")):
            img_dir = ann.parent.with_name(ann.parent.name[: -len("_not")])
            test, temp = img_dir / f"{ann.stem}_test.jpg", img_dir / f"{ann.stem}_temp.jpg"
            if test.exists() and temp.exists():
                pairs.append({"group": gdir.name, "id": ann.stem, "test": test, "temp": temp,
                              "boxes": read_boxes(ann), "split": split.get(ann.stem, "")})
    if not pairs:
        raise SystemExit(f"no annotated image pairs under {data}")
    return pairs


def _overlaps(win, box) -> bool:
    x0, y0, x1, y1 = win
    return box[0] < x1 and box[2] > x0 and box[1] < y1 and box[3] > y0


def defect_window(box, size: int, img: int, crop: int, jitter: int, margin: int, rng) -> tuple[int, int, int, int]:
    """A square window (x0, y0, x1, y1) inside the image holding ``box`` with ``margin`` pixels around it."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    w = min(max(crop, max(bw, bh) + 2 * margin), img)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    # the jitter may not push the box (plus margin) out of the window
    free_x, free_y = max(0, (w - bw) // 2 - margin), max(0, (w - bh) // 2 - margin)
    dx = int(rng.integers(-min(jitter, free_x), min(jitter, free_x) + 1))
    dy = int(rng.integers(-min(jitter, free_y), min(jitter, free_y) + 1))
    x0 = int(round(cx + dx - w / 2))
    y0 = int(round(cy + dy - w / 2))
    x0 = min(max(x0, 0), size - w)
    y0 = min(max(y0, 0), size - w)
    return x0, y0, x0 + w, y0 + w


def save_crop(src: Path, win, crop: int, dest: Path, cache: dict) -> None:
    if src not in cache:
        cache.clear()  # one source image at a time is enough: crops are made image by image
        cache[src] = Image.open(src).convert("L")
    im = cache[src].crop(win)
    if im.size != (crop, crop):
        im = im.resize((crop, crop), Image.BILINEAR)
    im.save(dest, optimize=True)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True,
                    help="a clone of github.com/tangsanli5201/DeepPCB (or its extracted tree): holds PCBData/")
    ap.add_argument("--out", type=Path, default=Path("data/deeppcb"), help="output folder (default: data/deeppcb)")
    ap.add_argument("--crop", type=int, default=128, help="crop side in pixels (default 128)")
    ap.add_argument("--per-board", type=int, default=30,
                    help="at most this many crops of each defect type per board (default 30)")
    ap.add_argument("--ok-per-board", type=int, default=None,
                    help="defect-free crops per board (default: 2 x --per-board)")
    ap.add_argument("--ok-source", choices=("test", "template"), default="test",
                    help="defect-free windows from the tested images away from every box (default) or from "
                         "the defect-free templates")
    ap.add_argument("--jitter", type=int, default=16, help="largest shift of a defect crop's centre (pixels)")
    ap.add_argument("--margin", type=int, default=8, help="pixels kept around a defect box inside its crop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="write into an OUT that already has images")
    args = ap.parse_args(argv)
    ok_per_board = 2 * args.per_board if args.ok_per_board is None else args.ok_per_board

    pairs = find_pairs(args.repo)
    images = args.out / "images"
    if images.exists() and any(images.iterdir()) and not args.force:
        raise SystemExit(f"{images} already has files (--force to overwrite)")
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    size = 640
    crop = args.crop

    # 1. choose the crops (no decoding yet): per board, per type, a seeded shuffle of its boxes
    jobs = []  # (pair, kind 'test'/'temp', window, label, box-in-crop)
    boards = sorted({p["group"] for p in pairs})
    for g in boards:
        gp = [p for p in pairs if p["group"] == g]
        for t, label in TYPES.items():
            cands = [(p, b) for p in gp for b in p["boxes"] if b[4] == t]
            taken = 0
            for i in rng.permutation(len(cands)):
                if taken >= args.per_board:
                    break
                p, b = cands[int(i)]
                win = defect_window(b, size, size, crop, args.jitter, args.margin, rng)
                if any(o[4] != t and _overlaps(win, o) for o in p["boxes"]):
                    continue
                s = crop / (win[2] - win[0])
                rel = (round((b[0] - win[0]) * s), round((b[1] - win[1]) * s),
                       round((b[2] - b[0]) * s), round((b[3] - b[1]) * s))
                jobs.append((p, "test", win, label, rel))
                taken += 1
        taken, tries = 0, 0
        while taken < ok_per_board and tries < 200 * max(ok_per_board, 1):
            tries += 1
            p = gp[int(rng.integers(len(gp)))]
            x0, y0 = (int(v) for v in rng.integers(0, size - crop + 1, 2))
            win = (x0, y0, x0 + crop, y0 + crop)
            if args.ok_source == "test":
                pad = (x0 - args.margin, y0 - args.margin, x0 + crop + args.margin, y0 + crop + args.margin)
                if any(_overlaps(pad, o) for o in p["boxes"]):
                    continue
            jobs.append((p, "test" if args.ok_source == "test" else "temp", win, OK, None))
            taken += 1

    # 2. write them, image by image, with names that do not give the label away
    jobs.sort(key=lambda j: (j[0]["group"], j[0]["id"], j[1], j[2]))
    per_image: Counter = Counter()
    cache: dict = {}
    rows = []
    for p, kind, win, label, rel in jobs:
        n = per_image[p["id"]]
        per_image[p["id"]] += 1
        name = f"{p['id']}_{n:02d}.png"
        save_crop(p[kind], win, crop, images / name, cache)
        rows.append({"path": name, "label": label, "defective": "no" if label == OK else "yes",
                     "group": p["group"], "split": p["split"],
                     "source": p[kind].relative_to(args.repo).as_posix(),
                     "box": "" if rel is None else ",".join(str(v) for v in rel)})
    with open(args.out / "truth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "defective", "group", "split", "source", "box"])
        w.writeheader()
        w.writerows(rows)

    counts = Counter(r["label"] for r in rows)
    by_board = Counter(r["group"] for r in rows)
    print(f"{len(rows)} crops of {crop} px from {len(pairs)} image pairs, {len(boards)} boards -> {args.out}",
          file=sys.stderr)
    print("per label: " + ", ".join(f"{k} {counts[k]}" for k in [*TYPES.values(), OK]), file=sys.stderr)
    print("per board: " + ", ".join(f"{k} {v}" for k, v in sorted(by_board.items())), file=sys.stderr)
    return {"crops": len(rows), "labels": dict(counts), "boards": dict(by_board)}


if __name__ == "__main__":
    main()
