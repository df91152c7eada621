"""CLI pieces for models of the user's own: the ``--backbone`` value (registry names and
``onnx:FILE``, ``torchscript:FILE``, ``timm:ARCH``), ``--text-model`` and ``search --text``.

Used by :mod:`labeler.cli.ingest`, :mod:`labeler.cli.search` and :mod:`labeler.cli.features`; the work is
done by :mod:`labeler.embedding.byo` and :mod:`labeler.embedding.text`.
"""

from __future__ import annotations

import json
import os
import sys

import click

from ..embedding.registry import BACKBONES, is_backbone_name, normalise_backbone_name


class BackboneName(click.ParamType):
    """'auto', a registry name, or ``onnx:FILE``, ``torchscript:FILE``, ``timm:ARCH`` (a file
    made absolute, so the project finds it from any folder)."""

    name = "backbone"

    def get_metavar(self, param, *args, **kwargs) -> str:
        return "[" + "|".join(("auto", *BACKBONES)) + "|onnx:FILE|torchscript:FILE|timm:ARCH]"

    def convert(self, value, param, ctx):
        if value is None or is_backbone_name(value):
            if value is None:
                return None
            name = normalise_backbone_name(value)
            from ..embedding.registry import is_byo, parse_byo

            if is_byo(name) and not name.startswith("timm:"):  # a missing file fails before any work
                kind, target, _ = parse_byo(name)
                if not os.path.isfile(target):
                    self.fail(f"{kind} file not found: {target}", param, ctx)
            return name
        try:
            from ..embedding.registry import parse_byo

            parse_byo(value)
        except Exception as e:  # noqa: BLE001 - the parser's own message is the clearest
            if ":" in str(value):
                self.fail(str(e), param, ctx)
        self.fail(f"{value!r} is not one of {', '.join(('auto', *BACKBONES))}, onnx:FILE, torchscript:FILE, "
                  "timm:ARCH", param, ctx)


BACKBONE = BackboneName()

#: The ``--backbone`` help line.
BACKBONE_HELP = ("CNN for embeddings (default auto: resnet50 when its weights can be had), or your own: "
                 "onnx:FILE, torchscript:FILE, timm:ARCH (options :size=224:mean=R,G,B:std=R,G,B; see README).")

TEXT_MODEL = click.option(
    "--text-model", default=None, metavar="NAME:CHECKPOINT",
    help="Also store open_clip image embeddings for `search --text` and zero-shot: an open_clip model "
         "(or a JSON config file) and a pretrained tag or checkpoint file, e.g. ViT-B-32:laion2b_s34b_b79k "
         "(pip install 'labeler[models]').")

TEXT_QUERY = click.option(
    "--text", "texts", multiple=True,
    help="Search by a sentence instead of images (open_clip embeddings stored by --text-model); repeatable.")


def add_text_model(project, spec: str, *, quiet: bool = False, device: str = "auto") -> None:
    """Compute and store the CLIP feature set of ``spec``; print one line."""
    from ..embedding.text import add_text_features
    from ..project import project_lock

    if not quiet:
        click.echo(f"embedding the images with open_clip {spec} for text search ...", err=True)
    with project_lock(project.root, "text feature computation"):
        rep = add_text_features(project, spec, device=device, progress=not quiet)
    click.echo(f"stored feature set {rep['name']} (text search): {rep['rows']} x {rep['dim']} in "
               f"{rep['seconds']:.1f} s" + (f"; {len(rep['failures'])} unreadable images" if rep["failures"] else ""))


def text_search_cli(project, texts, queries, k: int, as_json: bool, feature_set: str | None = None) -> None:
    """Print the nearest images to each text (one JSON object per text with ``as_json``).

    Raises
    ------
    BadInputError
        No text, or image queries as well.
    """
    from ..errors import BadInputError
    from ..text_search import search_text

    if not texts or queries:
        raise BadInputError("give image QUERIES or --text TEXT (not both)")

    for res in search_text(project, list(texts), k, feature_set=feature_set):
        if as_json:
            click.echo(json.dumps(res.to_dict()))
            continue
        click.echo(f"text {res.query!r} ({res.feature_set}):")
        for n in res.neighbours:
            click.echo(f"  {n.similarity:.3f}  id {n.image_id:>6}  cluster {n.cluster:>3}  "
                       f"label {n.label or '-':<12} {n.path}")
    sys.stdout.flush()
