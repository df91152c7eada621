"""--engine ray on a local Ray instance: the same ids and embeddings (cosine >= 0.999) as
the local path, thumbnails written, and resume embeds only what is new."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from fixtures_images import copy_elpv  # noqa: E402
from labeler.config import Settings  # noqa: E402
from labeler.errors import BadInputError  # noqa: E402
from labeler.pipeline import ingest  # noqa: E402
from labeler.project import Project  # noqa: E402

pytestmark = pytest.mark.slow

SETTINGS = dict(backbone="efficientnet-lite0", pca_components=8, min_cluster_size=3, min_samples=2,
                batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


def test_ray_engine_matches_local(tmp_path, local_ray):
    img = tmp_path / "img"
    img.mkdir()
    files = copy_elpv(img, 12)
    for f in files[8:]:  # added later, to check resume
        f.rename(tmp_path / f.name)
    s = Settings(**SETTINGS)
    ingest(img, tmp_path / "ray", s, progress=False, engine="ray")
    for f in files[8:]:
        (tmp_path / f.name).rename(f)
    rep = ingest(img, tmp_path / "ray", s, progress=False, engine="ray")
    assert rep.embedded == 4  # only the new files
    ingest(img, tmp_path / "local", s, progress=False)

    a, b = Project(tmp_path / "local"), Project(tmp_path / "ray")
    ra = {r["path"]: (r["id"], r["row"]) for r in a.store.image_table()}
    rb = {r["path"]: (r["id"], r["row"]) for r in b.store.image_table()}
    assert set(ra) == set(rb) and len(ra) == 12
    assert {p: v[0] for p, v in ra.items()} == {p: v[0] for p, v in rb.items()}
    ea, eb = np.asarray(a.load_array("embeddings")), np.asarray(b.load_array("embeddings"))
    for p in ra:
        x, y = ea[ra[p][1]], eb[rb[p][1]]
        assert x @ y / np.linalg.norm(x) / np.linalg.norm(y) >= 0.999, p
    assert len(list(b.thumbs_dir.glob("*.jpg"))) == 12
    assert b.store.get_meta("backbone")["name"] == "efficientnet-lite0"


def test_unknown_engine_changes_nothing(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    copy_elpv(img, 2)
    with pytest.raises(BadInputError):
        ingest(img, tmp_path / "p", Settings(**SETTINGS), engine="spark")
    assert not (tmp_path / "p").exists()
