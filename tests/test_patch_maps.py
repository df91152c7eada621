"""Stored patch maps (labeler.embedding.patch_maps) on 80 real ELPV photos: shapes, cell <-> box
mapping in both views, a query's map equals the stored one, bad boxes refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from labeler.errors import BadInputError, NotFoundError


@pytest.fixture(scope="module")
def mapped(built_project, tmp_path_factory):
    """A copy of the built project with its patch maps computed once for this module."""
    from labeler.embedding.patch_maps import compute_patch_maps
    from labeler.project import Project

    dest = tmp_path_factory.mktemp("maps") / "project"
    shutil.copytree(built_project, dest)
    p = Project(dest)
    info = compute_patch_maps(p, progress=False, batch_size=16, num_workers=0)
    yield p, info
    p.store.close()


def test_no_maps_is_one_line_naming_the_command(project):
    from labeler.embedding.patch_maps import load_patch_maps, patch_map_of_image, patch_maps_info

    assert patch_maps_info(project) == {}
    with pytest.raises(NotFoundError, match="labeler features --project DIR --patch-maps"):
        load_patch_maps(project)
    with pytest.raises(NotFoundError, match="--patch-maps"):
        patch_map_of_image(project, None)


def test_shapes_dtype_and_rows(mapped):
    from labeler.embedding.patch_maps import DIM, GRID, load_patch_maps

    p, info = mapped
    maps, stored = load_patch_maps(p)
    n = p.store.next_row()
    assert maps.shape == (n, GRID * GRID, DIM) and maps.dtype == np.float16
    assert stored["grid"] == GRID and stored["dim"] == DIM and stored["rows"] == n and not stored["failures"]
    assert info["bytes"] == (p.root / "patches" / "maps.npy").stat().st_size
    # Every image has a map of its own (no zero rows, no two rows alike).
    flat = np.asarray(maps, np.float32).reshape(n, -1)
    assert (np.abs(flat).sum(1) > 0).all()
    assert len(np.unique(flat.round(2), axis=0)) == n


def test_query_map_equals_stored_map(mapped):
    from labeler import images
    from labeler.embedding.patch_maps import load_patch_maps, patch_map_of_image

    p, _ = mapped
    maps, _ = load_patch_maps(p)
    for rec in p.store.image_table()[:3]:
        q = patch_map_of_image(p, images.load_image(p.image_path(rec["path"])))
        s = np.asarray(maps[int(rec["row"])], np.float32)
        assert q.shape == s.shape and q.dtype == np.float32
        # float16 storage: relative error ~1e-3 of each value's magnitude (plus runtime differences).
        assert np.abs(q - s).max() <= 2e-2 * np.abs(s).max(), np.abs(q - s).max()
        other = np.asarray(maps[(int(rec["row"]) + 1) % len(maps)], np.float32)
        assert np.abs(q - other).max() > 10 * np.abs(q - s).max()


def test_cell_boxes_and_box_cells_whole_view():
    from labeler.embedding.patch_maps import box_cells, cell_boxes

    info = {"grid": 14, "view": "whole", "backbone": "efficientnet-lite0"}
    b = cell_boxes(280, 140, info)
    assert b.shape == (196, 4) and b.dtype == np.float32
    np.testing.assert_allclose(b[0], [0, 0, 20, 10])
    np.testing.assert_allclose(b[15], [20, 10, 20, 10])  # row 1, column 1
    np.testing.assert_allclose(b[-1], [260, 130, 20, 10])
    for i in (0, 15, 100, 195):  # each cell's own box maps back to that cell alone
        assert box_cells(tuple(b[i]), 280, 140, info).tolist() == [i]
    assert len(box_cells((0, 0, 280, 140), 280, 140, info)) == 196
    left = box_cells((0, 0, 140, 140), 280, 140, info)
    assert len(left) == 98 and (left % 14 < 7).all()
    # A small box inside one cell: the one cell it overlaps.
    assert box_cells((21, 11, 3, 3), 280, 140, info).tolist() == [15]


def test_cell_boxes_and_box_cells_center_view():
    from labeler.embedding.patch_maps import box_cells, cell_boxes
    from labeler.embedding.registry import get_spec

    info = {"grid": 14, "view": "center", "backbone": "efficientnet-lite0"}
    spec = get_spec("efficientnet-lite0")
    w, h = 400, 300
    b = cell_boxes(w, h, info)
    side = spec.input_size * min(w, h) / spec.crop_short_side
    # The cells tile the centred square the network sees, not the whole image.
    np.testing.assert_allclose(b[0, :2], [(w - side) / 2, (h - side) / 2], rtol=1e-5)
    np.testing.assert_allclose(b[:, 2], side / 14, rtol=1e-5)
    np.testing.assert_allclose(b[-1, :2] + b[-1, 2:], [(w + side) / 2, (h + side) / 2], rtol=1e-5)
    assert box_cells(tuple(b[20]), w, h, info).tolist() == [20]
    # The left strip outside the crop is not seen.
    with pytest.raises(BadInputError, match="outside"):
        box_cells((0, 0, (w - side) / 2 - 1, h), w, h, info)


@pytest.mark.parametrize("box, match", [((10, 10, 0, 5), "empty"), ((10, 10, 5, -1), "empty"),
                                        ((500, 500, 10, 10), "outside"), ((-50, 0, 20, 20), "outside")])
def test_bad_boxes_are_refused(box, match):
    from labeler.embedding.patch_maps import box_cells

    with pytest.raises(BadInputError, match=match):
        box_cells(box, 300, 300, {"grid": 14, "view": "whole", "backbone": "efficientnet-lite0"})
