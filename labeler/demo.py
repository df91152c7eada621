"""The bundled real data: 2,624 ELPV electroluminescence photos of solar cells.

Source: Deitsch et al., "Automatic classification of defective photovoltaic
module cells in electroluminescence images", Solar Energy 2019; Buerhop-Lutz et
al. 2018. Shipped on PyPI as ``elpv-dataset`` (images CC BY-NC-SA 4.0).
Labels: defect probability 0, 1/3, 2/3, 1 and cell type mono / poly.
"""

from __future__ import annotations

import csv
import shutil
from importlib import resources
from pathlib import Path



def elpv_source() -> Path:
    """The folder inside the installed ``elpv-dataset`` package holding labels.csv and images/.

    Raises
    ------
    ModuleNotFoundError
        ``elpv-dataset`` is not installed (``pip install elpv-dataset``).
    """
    try:
        return Path(str(resources.files("elpv_dataset") / "data"))
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("the ELPV photos come from `pip install elpv-dataset`") from e


def read_elpv_labels(source: Path | None = None) -> list[dict]:
    """ELPV ground truth: dicts with file, defect_probability (float), cell_type."""
    source = source or elpv_source()
    rows = []
    for line in (source / "labels.csv").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append({"file": parts[0], "defect_probability": float(parts[1]), "cell_type": parts[2]})
    return rows


def prepare_elpv(dest: Path | str, *, limit: int | None = None) -> tuple[Path, Path]:
    """Write the ELPV photos as image files under ``dest/images`` (once) and the
    ground truth as ``dest/truth.csv``.

    truth.csv columns: path (relative to the image folder), cell_type (mono/poly),
    defect_probability, defect_level (0-3), defective (yes when probability >= 0.5).

    Returns (image folder, truth.csv path).
    """
    dest = Path(dest)
    img_dir = dest / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    src = elpv_source()
    rows = read_elpv_labels(src)[:limit]
    for r in rows:
        target = img_dir / Path(r["file"]).name
        if not target.exists():
            shutil.copyfile(src / r["file"], target)
    truth = dest / "truth.csv"
    with open(truth, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "cell_type", "defect_probability", "defect_level", "defective"])
        for r in rows:
            p = r["defect_probability"]
            w.writerow([Path(r["file"]).name, r["cell_type"], f"{p:.4f}", round(p * 3),
                        "yes" if p >= 0.5 else "no"])
    return img_dir, truth
