"""How well does labeler do on a collection whose true classes are known?

``labeler evaluate --project DIR --truth truth.csv`` compares a project with a
CSV mapping image path -> true class and reports three things:

Clustering against the truth
    For each feature (raw pixels downsampled to 32x32 = the per-pixel difference
    baseline, the backbone embedding, the PCA vectors) and each method (HDBSCAN
    with the project's settings on a 10-d UMAP of the feature, as ingest does;
    KMeans with k = number of classes and larger k): adjusted Rand index
    (Hubert & Arabie 1985), normalised mutual information (Strehl & Ghosh 2002),
    homogeneity and completeness (Rosenberg & Hirschberg 2007), all from
    ``sklearn.metrics``; purity (accuracy when every cluster takes its majority
    class) and its macro twin, the balanced accuracy of that labelling. These are
    computed over the clustered images; the noise share is reported beside them
    (as umap-learn's "Using UMAP for Clustering" does).
Reverse image search
    Leave-one-out precision@1, precision@10 and mean average precision
    (Manning, Raghavan & Schuetze 2008, ch. 8), overall (micro: mean over
    queries) and per class with the macro average (mean over classes).
Labeling cost
    The simulated annotator of :mod:`labeler.evaluate.simulate`: accuracy and macro-F1
    against the number of dashboard actions, and the actions needed for 90% and
    95% accuracy.

Clusterings are refit on the images that have a truth (the whole collection
when every image has one). The feature arrays come from the project; raw
pixels are decoded from the image files.
"""

from .features import FEATURE_NAMES, FEATURES, load_features, raw_pixels
from .metrics import balanced_accuracy, clustering_scores, majority_mapping, purity, search_scores
from .report import markdown_table, write_outputs
from .run import Clustering, current_clusters, evaluate_project, run_clusterings
from .truth import align_truth, read_truth

__all__ = [
    "FEATURES", "FEATURE_NAMES", "Clustering", "align_truth", "balanced_accuracy", "clustering_scores",
    "current_clusters", "evaluate_project", "load_features", "majority_mapping", "markdown_table",
    "purity", "raw_pixels", "read_truth", "run_clusterings", "search_scores", "write_outputs",
]
