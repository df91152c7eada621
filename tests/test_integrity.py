"""Files on disk carry their size and checksums in the manifest: a truncated, extended,
swapped or altered array, index or model is refused on open with one line that names it
and the command that rebuilds it; `labeler check` verifies a whole project."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from labeler import integrity
from labeler.cli import main
from labeler.errors import CorruptFileError
from labeler.check import DAMAGE, INTERRUPTED, check_project, exit_status
from labeler.integrity import load_model, verify
from labeler.project import Project

ARRAYS = ("embeddings", "pca", "map", "cluster_space")
MODELS = ("models/pca.joblib", "models/umap_map.joblib", "models/umap_cluster.joblib", "models/clusterer.joblib")


def _truncate(path):
    os.truncate(path, path.stat().st_size - 64)


def _extend(path):
    with open(path, "ab") as f:
        f.write(b"\0" * 64)


def _swap(path):
    """Another file of the same size and format: an older copy, another project's array."""
    if path.suffix == ".npy":
        a = np.load(path)
        np.save(path, a[::-1].copy())  # same shape and dtype, rows reversed
    else:
        data = bytearray(path.read_bytes())
        data[-200:] = bytes(200)
        path.write_bytes(bytes(data))


def _alter(path):
    """Overwrite a few bytes inside the data (a disk or a tool writing where it should not)."""
    with open(path, "r+b") as f:
        f.seek(min(300, path.stat().st_size - 16))
        old = f.read(16)
        f.seek(-16, 1)
        f.write(bytes((b ^ 0xFF) for b in old))


CORRUPTIONS = {"truncate": _truncate, "extend": _extend, "swap": _swap, "alter": _alter}


def test_a_fresh_project_records_every_file_and_checks_clean(built_project):
    p = Project(built_project)
    names = {e["name"] for e in p.store.manifest_entries()}
    assert {f"{a}.npy" for a in ARRAYS} | set(MODELS) <= names
    for e in p.store.manifest_entries():
        assert e["digest"] and e["next_digest"] is None  # committed, nothing half-written
        assert e["size"] == (p.root / e["name"]).stat().st_size
    p.store.close()
    assert check_project(built_project) == []
    r = CliRunner().invoke(main, ["check", "--project", str(built_project)])
    assert r.exit_code == 0 and r.output.strip().endswith(": ok")


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
@pytest.mark.parametrize("name", ARRAYS)
def test_a_damaged_array_is_refused_on_open_and_by_check(project, name, kind):
    path = project.array_path(name)
    CORRUPTIONS[kind](path)
    with pytest.raises(CorruptFileError) as e:
        project.load_array(name)
    msg = str(e.value)
    assert "\n" not in msg and f"{name}.npy" in msg
    fix = "labeler ingest" if name == "embeddings" else "labeler cluster"
    assert fix in msg and ("--force" in msg if name == "embeddings" else "--remap" in msg)
    problems = check_project(project.root)
    assert any(p.file == f"{name}.npy" for p in problems), problems


@pytest.mark.parametrize("name", MODELS)
def test_a_damaged_model_is_refused_before_it_is_unpickled(project, name):
    _alter(project.root / name)
    with pytest.raises(CorruptFileError, match=name.split("/")[-1]):
        load_model(project, project.root / name)
    assert [p.file for p in check_project(project.root)] == [name]


def test_commands_that_load_arrays_fail_with_one_line(project):
    _swap(project.array_path("pca"))
    r = CliRunner().invoke(main, ["duplicates", "--project", str(project.root)])
    assert r.exit_code == 1
    err = r.output.strip()
    assert "\n" not in err and "pca.npy is damaged" in err and "labeler cluster" in err and "--remap" in err
    assert "Traceback" not in err


def test_check_reports_each_problem_on_one_line_and_as_json(project):
    _truncate(project.array_path("map"))
    _alter(project.root / "models/clusterer.joblib")
    con = project.store.con
    con.execute("PRAGMA foreign_keys=OFF")
    con.execute("INSERT INTO actions(kind, annotator, at, description) VALUES ('label', 'x', 0, 'x')")
    aid = con.execute("SELECT MAX(id) FROM actions").fetchone()[0]
    con.execute("INSERT INTO labels(image_id, label, source, annotator, action_id, labelled_at) "
                "VALUES (999999, 'ghost', 'manual', 'x', ?, 0)", (aid,))
    project.store.close()
    r = CliRunner().invoke(main, ["check", "--project", str(project.root)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert any(ln.startswith("map.npy") for ln in lines)
    assert any(ln.startswith("models/clusterer.joblib") and "labeler cluster --project" in ln for ln in lines)
    assert any("refer to missing images" in ln or "missing row of images" in ln for ln in lines)
    r = CliRunner().invoke(main, ["check", "--project", str(project.root), "--json"])
    out = json.loads(r.output)
    assert r.exit_code == 1 and out["ok"] is False
    assert {"map.npy", "models/clusterer.joblib", "labeler.db"} <= {p["file"] for p in out["problems"]}


def test_check_finds_arrays_that_disagree_with_the_images_table(project):
    xy = np.array(project.load_array("map"))
    project.save_array("map", xy[:-3])  # written by labeler (so in the manifest), but short
    problems = check_project(project.root)
    assert [p.file for p in problems] == ["map.npy"] and "rows" in problems[0].problem
    # Not the rows an interrupted run leaves (the database recorded them all on the map).
    assert problems[0].kind == DAMAGE and exit_status(problems) == 1


def _catalogue_new(project, n: int = 2, *, embed: bool = False) -> None:
    """What an ingest killed part-way leaves: ``n`` new images catalogued (and, ``embed``,
    their rows committed), the arrays not yet written."""
    entries = [{"path": f"new/{i}.png", "size": 10, "mtime": 0.0, "hash": f"{i:016x}"} for i in range(n)]
    project.store.add_or_update_images(entries)
    if embed:
        by_path = project.store.images_by_path()
        row = project.store.next_row()
        project.store.commit_embedded([{"id": int(by_path[e["path"]]["id"]), "row": row + k, "width": 8,
                                        "height": 8, "top1": 0, "top1_prob": 0.5} for k, e in enumerate(entries)])


def test_an_ingest_stopped_while_embedding_is_interrupted_not_damage(project):
    _catalogue_new(project)
    project.store.close()
    problems = check_project(project.root)
    assert [(p.file, p.kind) for p in problems] == [("labeler.db", INTERRUPTED)]
    line = str(problems[0])
    assert line.startswith("labeler.db: interrupted: 2 image(s) catalogued but not embedded; run `labeler ingest ")
    assert line.endswith(f"--project {project.root}` to finish it")
    r = CliRunner().invoke(main, ["check", "--project", str(project.root), "--json"])
    out = json.loads(r.output)
    assert r.exit_code == 2 and out["status"] == "interrupted" and out["problems"][0]["kind"] == INTERRUPTED
    r = CliRunner().invoke(main, ["check", "--project", str(project.root)])
    assert r.exit_code == 2 and r.output.count("interrupted: ") == 1


def test_rows_embedded_but_not_yet_in_the_arrays_are_interrupted(project):
    _catalogue_new(project, embed=True)
    project.store.close()
    problems = check_project(project.root)
    assert sorted(p.file for p in problems) == sorted(f"{a}.npy" for a in ARRAYS)
    assert {p.kind for p in problems} == {INTERRUPTED} and exit_status(problems) == 2
    assert all("labeler ingest" in p.command for p in problems)
    # The same state next to a damaged file: damage decides the exit status.
    _alter(project.root / "models/umap_map.joblib")
    problems = check_project(project.root)
    assert [p.file for p in problems if p.kind == DAMAGE] == ["models/umap_map.joblib"]
    assert CliRunner().invoke(main, ["check", "--project", str(project.root)]).exit_code == 1


def test_a_remapping_stopped_after_removing_the_clustering_model_is_interrupted(project):
    project.store.set_meta(clustering_stale=True)  # what rebuild_maps does first
    (project.root / "models/clusterer.joblib").unlink()
    project.store.close()
    problems = check_project(project.root)
    assert [(p.file, p.kind) for p in problems] == [("models/clusterer.joblib", INTERRUPTED)]
    assert f"run `labeler cluster --project {project.root}` to finish it" in str(problems[0])
    # Without the record of a re-mapping, a missing model is damage.
    p = Project(project.root)
    p.store.set_meta(clustering_stale=False)
    p.store.close()
    problems = check_project(project.root)
    assert [(p.file, p.kind) for p in problems] == [("models/clusterer.joblib", DAMAGE)]


def test_a_flipped_byte_outside_the_samples_is_found_by_check(project):
    """The documented trade-off: on open only ~0.4 MiB of each file is read (the
    sampled checksum); `labeler check` reads every byte."""
    big = np.random.default_rng(0).standard_normal((200_000, 4)).astype(np.float32)  # 3.2 MB
    project.save_array("extra", big)
    path = project.array_path("extra")
    size = path.stat().st_size
    step = (size - 2 * integrity.EDGE - integrity.BLOCK) // (integrity.BLOCKS - 1)
    with open(path, "r+b") as f:  # a byte between two sampled blocks
        f.seek(integrity.EDGE + step // 2 + integrity.BLOCK)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 1]))
    project.load_array("extra")  # passes the sampled check
    problems = check_project(project.root)
    assert [p.file for p in problems] == ["extra.npy"] and "checksum" in problems[0].problem


def test_a_crash_between_the_steps_of_a_write_is_not_damage(project):
    """Stage, rename, commit: killed after staging, the old file stays under its committed
    entry; killed after the rename, the new file is under its staged entry. Both open."""
    path = project.array_path("map")
    old = np.array(project.load_array("map"))
    new = old + 1
    tmp = path.with_name("new.npy")
    np.save(tmp, new)
    size, sample, digest = integrity.digests(tmp)
    project.store.manifest_stage("map.npy", size, sample, digest)  # killed here: old file stays
    integrity._VERIFIED.clear()
    assert np.array_equal(project.load_array("map"), old)
    os.replace(tmp, path)  # killed here: the new file, entry only staged
    integrity._VERIFIED.clear()
    assert np.array_equal(project.load_array("map"), new)
    assert check_project(project.root) == []


def test_projects_from_before_the_manifest_open_and_record_on_next_write(project, recwarn):
    project.store.con.execute("DROP TABLE manifest")
    project.store.close()
    p = Project(project.root)  # an older project: no manifest table, no entries
    assert p.store.manifest_entries() == []
    for name in ARRAYS:
        p.load_array(name)
    assert check_project(p.root) == [] and not recwarn.list
    p.save_array("map", np.array(p.load_array("map")))
    assert [e["name"] for e in p.store.manifest_entries()] == ["map.npy"]
    _truncate(p.array_path("map"))
    with pytest.raises(CorruptFileError):
        p.load_array("map")
    p.store.close()


def test_the_hnsw_index_is_recorded_and_rebuilt_when_damaged(project, monkeypatch):
    from labeler import index

    monkeypatch.setattr(index, "HNSW_FROM", 10)
    assert index.update_project_index(project) == "built"
    names = {e["name"] for e in project.store.manifest_entries()}
    assert {"models/index.faiss", "models/index.json"} <= names
    q = np.array(project.load_array("pca")[:3])
    want = index.project_index(project).search(q, 5)[1]
    _alter(project.root / "models/index.faiss")
    assert [p.file for p in check_project(project.root)] == ["models/index.faiss"]
    said = []
    assert index.update_project_index(project, say=said.append) == "built"
    assert any("index.faiss is damaged" in s for s in said)
    assert np.array_equal(index.project_index(project).search(q, 5)[1], want)
    assert check_project(project.root) == []


def test_ingest_force_embeds_a_damaged_embeddings_file_again(project, elpv_dir):
    from labeler.labels import label_images
    from labeler.pipeline import ingest

    ids = [int(i) for i in project.store.row_image_ids()[:5]]
    label_images(project, ids, "cracked", annotator="ana")
    want = np.array(project.load_array("embeddings"))
    _swap(project.array_path("embeddings"))
    with pytest.raises(CorruptFileError, match="--force"):
        project.load_array("embeddings")
    settings = project.settings()
    ingest(elpv_dir / "images", project.root, settings, force=True, progress=False)
    got = np.array(project.load_array("embeddings"))
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-3)
    assert check_project(project.root) == []
    assert project.store.labels() == dict.fromkeys(ids, "cracked")


def test_verify_passes_missing_and_unrecorded_files(project):
    verify(project, project.root / "nothing.npy")
    (project.root / "notes.npy").write_bytes(b"anything")
    verify(project, project.root / "notes.npy")


def test_reads_racing_rewrites_never_see_damage(project):
    """A dashboard worker loads map.npy while an ingest rewrites it again and again: each
    load gets the old or the new file, never a false 'damaged'."""
    import threading

    xy = np.array(project.load_array("map"))
    done, errors, loads = threading.Event(), [], [0]

    def reader():
        p = Project(project.root)
        try:
            while not done.is_set():
                a = np.asarray(p.load_array("map"))
                assert a.shape == xy.shape
                loads[0] += 1
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            p.store.close()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            project.save_array("map", xy + i)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert errors == [] and loads[0] > 40
    assert check_project(project.root) == []


def test_check_during_an_ingest_says_so_and_checks_the_database_alone(project):
    import threading

    from labeler.project import project_lock

    held, release = threading.Event(), threading.Event()

    def ingest_like():
        with project_lock(project.root, "ingest"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=ingest_like)
    t.start()
    try:
        held.wait(30)
        _truncate(project.array_path("map"))  # not looked at while the ingest runs
        problems = check_project(project.root)
    finally:
        release.set()
        t.join(30)
    assert [p.file for p in problems] == ["labeler.lock"] and "is busy: ingest" in problems[0].problem
    assert [p.file for p in check_project(project.root)] == ["map.npy"]


def test_feature_sets_are_recorded_and_a_damaged_one_names_its_command(project):
    from labeler.embedding.feature_sets import load_feature_set, save_feature_set

    n = project.store.next_row()
    a = np.random.default_rng(1).standard_normal((n, 8)).astype(np.float32)
    save_feature_set(project, "ms", a, info={"kind": "frozen", "feature_type": "multiscale"})
    save_feature_set(project, "tuned", a + 1, info={"kind": "finetuned"})
    assert np.array_equal(load_feature_set(project, "ms"), a)
    assert {"features/ms.npy", "features/tuned.npy"} <= {e["name"] for e in project.store.manifest_entries()}
    _swap(project.root / "features/ms.npy")
    _truncate(project.root / "features/tuned.npy")
    with pytest.raises(CorruptFileError, match="--compute multiscale --name ms"):
        load_feature_set(project, "ms")
    with pytest.raises(CorruptFileError, match="labeler finetune"):
        load_feature_set(project, "tuned")
    assert {p.file for p in check_project(project.root)} == {"features/ms.npy", "features/tuned.npy"}


@pytest.mark.parametrize("where", ["header", "middle"])
def test_a_damaged_database_is_one_line_of_check_not_a_traceback(project, where):
    import sqlite3

    project.store.close()
    db = project.root / "labeler.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with open(db, "r+b") as f:
        f.seek(0 if where == "header" else db.stat().st_size // 2)
        f.write(np.random.default_rng(0).bytes(4096))
    problems = check_project(project.root)
    assert problems and problems[0].file == "labeler.db"
    r = CliRunner().invoke(main, ["check", "--project", str(project.root)])
    assert r.exit_code == 1 and r.output.startswith("labeler.db: ") and "Traceback" not in r.output


def test_a_finetuned_model_is_recorded_and_a_damaged_one_names_finetune(project):
    import torch

    from labeler.embedding.finetune import load_finetuned, save_finetuned

    model = {"tail": {"w": torch.arange(6.0).reshape(3, 2)}, "classes": ["a", "b"], "prefix_end": 7,
             "head": "linear", "loss": "ce", "backbone": "efficientnet-lite0"}
    save_finetuned(project, "finetuned-1", model)
    assert project.store.manifest_entry("models/finetuned-1.pt")["digest"]
    got = load_finetuned(project, "finetuned-1")
    assert torch.equal(got["tail"]["w"], model["tail"]["w"]) and got["classes"] == ["a", "b"]
    assert check_project(project.root) == []
    _alter(project.models_dir / "finetuned-1.pt")
    with pytest.raises(CorruptFileError) as e:
        load_finetuned(project, "finetuned-1")
    msg = str(e.value)
    assert msg.startswith("models/finetuned-1.pt is damaged") and "\n" not in msg
    assert f"`labeler finetune --project {project.root} --name finetuned-1`" in msg
    assert [(p.file, p.kind) for p in check_project(project.root)] == [("models/finetuned-1.pt", DAMAGE)]


def test_the_int8_model_is_recorded_and_checked_before_use(project, tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    from labeler.embedding import runtime

    class Tiny(torch.nn.Module):  # the exported graph's interface: input -> (features, logits)
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x).mean(dim=(2, 3))
            return y, y

    fp32 = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(Tiny().eval(), (torch.zeros(2, 3, 16, 16),), str(fp32), input_names=["input"],
                          output_names=["features", "logits"], dynamic_axes={"input": {0: "batch"}},
                          opset_version=runtime._OPSET, dynamo=False)
    dest = project.models_dir / "tiny-global-int8-0123.onnx"
    calibration = np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32)
    runtime.quantize_int8(fp32, calibration, dest, project)
    assert project.store.manifest_entry("models/tiny-global-int8-0123.onnx")["digest"]
    engine = runtime.int8_engine(project, dest)
    assert engine(torch.from_numpy(calibration[:2]))[0].shape == (2, 4)
    assert check_project(project.root) == []
    _alter(dest)
    with pytest.raises(CorruptFileError) as e:
        runtime.int8_engine(project, dest)
    msg = str(e.value)
    assert msg.startswith("models/tiny-global-int8-0123.onnx is damaged") and "--precision int8" in msg
    assert [(p.file, p.kind) for p in check_project(project.root)] == [("models/tiny-global-int8-0123.onnx", DAMAGE)]


def test_npy_headers_are_parsed_under_one_lock():
    """labeler.compat: numpy parses .npy headers with ast.literal_eval, which raised
    SystemError ('AST constructor recursion depth mismatch') when two dashboard threads
    loaded arrays at once on Python 3.11; importing labeler serialises it there."""
    import ast
    import sys

    import labeler  # noqa: F401

    assert ast.literal_eval("{'descr': '<f4', 'shape': (3, 2)}") == {"descr": "<f4", "shape": (3, 2)}
    assert getattr(ast.literal_eval, "_labeler_serialised", False) == (sys.version_info < (3, 13))
