"""The linear probe: multinomial logistic regression on feature vectors.

One computation for every part of labeler that fits a linear classifier on embeddings:
the suggestions (:mod:`labeler.assist.model`), the review of likely label errors
(:mod:`labeler.review`), the label-conditioned search (:mod:`labeler.assist.conditioned`)
and the fine-tune's frozen-features check (:mod:`labeler.embedding.finetune`). The probe is
scikit-learn's ``LogisticRegression`` (lbfgs, L2), the standard "linear probe" of
representation learning (Alain & Bengio 2016, "Understanding intermediate layers using
linear classifier probes").
"""

from __future__ import annotations

import warnings

import numpy as np

def fit_probe(x_train: np.ndarray, y_train: np.ndarray, n_classes: int, *, c: float = 1.0, init=None,
              balanced: bool = False, max_iter: int = 300):
    """The linear probe: multinomial logistic regression on feature vectors, the one every
    part of labeler fits (suggestions, review, label-conditioned search, the fine-tune's
    frozen-features check).

    Parameters
    ----------
    x_train : ndarray (m, D), float32
    y_train : ndarray (m,), int, class codes in 0..n_classes-1
    n_classes : int
        Classes in the problem (codes not in ``y_train`` get -inf logits in
        :func:`probe_logits`).
    c : float
        Inverse L2 regularisation strength (scikit-learn's ``C``).
    init : (coef, intercept) or None
        A warm start (lbfgs), used when its shape fits the classes present.
    balanced : bool
        ``class_weight='balanced'``.
    max_iter : int

    Returns
    -------
    (sklearn.linear_model.LogisticRegression, ndarray of the class codes present)
    """
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y_train)
    model = LogisticRegression(C=c, max_iter=max_iter, class_weight="balanced" if balanced else None,
                               warm_start=init is not None)
    if init is not None:
        coef, intercept = init
        if coef is not None and coef.shape[0] == (1 if len(present) == 2 else len(present)) \
                and coef.shape[1] == x_train.shape[1]:
            model.coef_, model.intercept_ = coef.copy(), intercept.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny sets: the warm start continues next time
        model.fit(x_train, y_train)
    return model, present


def probe_logits(model, present, x, n_classes) -> np.ndarray:
    """Logits (n, C) float64 of a :func:`fit_probe` model, -inf for classes it never saw."""
    out = np.full((len(x), n_classes), -np.inf, dtype=np.float64)
    z = x @ model.coef_.T.astype(np.float32) + model.intercept_.astype(np.float32)
    if len(present) == 2:
        out[:, present[0]] = 0.0
        out[:, present[1]] = z[:, 0]
    else:
        out[:, present] = z
    return out


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits (n, C), float64; rows of -inf logits stay finite-safe."""
    m = np.max(z, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(z - m)
    return z - m - np.log(e.sum(axis=1, keepdims=True))
