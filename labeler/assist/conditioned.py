"""Search conditioned on a label: "more like this, for *crack*".

Plain reverse image search ranks by cosine similarity over every dimension of
the search vectors, so a crack photo's nearest neighbours are mostly cells with
the same busbars and crystal texture. Conditioning on a label uses what a linear
probe learnt about that label from the annotator's labels:

``reweight``
    Each dimension is weighted by the magnitude of the label's one-vs-rest
    logistic-regression coefficient, ``w_d = |beta_d| / mean |beta|``, and
    neighbours are ranked by the cosine similarity of ``sqrt(w) * q`` and
    ``sqrt(w) * x``: the dimensions that tell the label apart count more (the
    relevance-feedback idea of re-weighting a query by a classifier, Rocchio 1971;
    Zhou & Huang 2003, "Relevance feedback in image retrieval: a comprehensive
    review").
``rerank``
    The plain top-K candidates are re-ranked by their cosine similarity plus the
    probe's probability of the label: near neighbours that also look like the label first.

Both are measured by ``benchmarks/bench_labeling.py`` (P@10 of the rare classes).
"""

from __future__ import annotations

import numpy as np

MODES = ("reweight", "rerank")


def label_probe(x_train: np.ndarray, is_label: np.ndarray, *, c: float = 1.0):
    """One-vs-rest logistic regression for one label (the product's probe,
    :func:`labeler.probe.fit_probe`, class-balanced).

    Parameters
    ----------
    x_train : ndarray (m, D), float32, L2-normalised labelled rows
    is_label : ndarray (m,), bool, True where the label is the one searched for

    Returns
    -------
    (coef (D,) float32, intercept float)

    Raises
    ------
    ValueError
        Fewer than one labelled example on either side.
    """
    from ..probe import fit_probe

    is_label = np.asarray(is_label, dtype=bool)
    if is_label.all() or not is_label.any():
        raise ValueError("a label probe needs images with and without the label")
    m, _ = fit_probe(x_train, is_label.astype(np.int64), 2, c=c, balanced=True)
    return m.coef_[0].astype(np.float32), float(m.intercept_[0])


def dimension_weights(coef: np.ndarray) -> np.ndarray:
    """``|beta| / mean |beta|``, (D,) float32 (mean weight 1, so similarities stay comparable)."""
    a = np.abs(np.asarray(coef, dtype=np.float32))
    return a / max(float(a.mean()), 1e-12)


def conditioned_scores(query: np.ndarray, candidates: np.ndarray, coef: np.ndarray, intercept: float = 0.0,
                       mode: str = "reweight") -> np.ndarray:
    """Scores of candidate vectors for a query, conditioned on a label's probe.

    Parameters
    ----------
    query : ndarray (D,), float32, L2-normalised
    candidates : ndarray (K, D), float32, L2-normalised
    coef, intercept : the label's probe (:func:`label_probe`)
    mode : 'reweight' or 'rerank'

    Returns
    -------
    ndarray (K,), float32, higher = better (reweight: a cosine similarity in [-1, 1];
    rerank: cosine similarity + probability, in [-1, 2])

    Raises
    ------
    ValueError
        Unknown mode.
    """
    q = np.asarray(query, dtype=np.float32)
    c = np.asarray(candidates, dtype=np.float32)
    if mode == "reweight":
        s = np.sqrt(dimension_weights(coef))
        qw = q * s
        cw = c * s
        qn = qw / max(float(np.linalg.norm(qw)), 1e-12)
        cn = cw / np.maximum(np.linalg.norm(cw, axis=1, keepdims=True), 1e-12)
        return (cn @ qn).astype(np.float32)
    if mode == "rerank":
        prob = 1.0 / (1.0 + np.exp(-(c @ np.asarray(coef, dtype=np.float32) + intercept)))
        return (c @ q + prob).astype(np.float32)
    raise ValueError(f"unknown conditioning mode {mode!r}; one of {MODES}")


def project_label_probe(project, vectors: np.ndarray, row_ids: np.ndarray, label: str):
    """The one-vs-rest probe of ``label`` on a project's labels (every source but accepted suggestions).

    Parameters
    ----------
    project : labeler.project.Project
    vectors : ndarray (n_rows, D), float32, the search vectors (L2-normalised)
    row_ids : ndarray (n_rows,), int64, image id of each row (-1 = none)
    label : str

    Returns
    -------
    (coef (D,) float32, intercept float)

    Raises
    ------
    BadInputError
        No image has ``label``, or every labelled image has it (nothing to tell it from).
    """
    from ..errors import BadInputError

    pos = {int(i): r for r, i in enumerate(row_ids) if i >= 0}
    got = [(pos[i], lab == label) for i, lab in project.store.decided_labels().items() if i in pos]
    if not any(is_l for _, is_l in got):
        raise BadInputError(f"no image is labelled {label!r}: label a few first (or check the spelling)")
    if all(is_l for _, is_l in got):
        raise BadInputError(f"every labelled image is {label!r}: label some images with other labels first")
    rows = np.array([r for r, _ in got], dtype=np.int64)
    return label_probe(np.asarray(vectors[rows], dtype=np.float32), np.array([b for _, b in got]))
