"""Settings precedence: defaults < labeler.toml < LABELER_* < overrides."""

import pytest

from labeler.config import Settings, load_settings, save_settings


def test_precedence(tmp_path):
    toml = tmp_path / "labeler.toml"
    save_settings(Settings(pca_components=64, method="kmeans", k=5), toml)
    s = load_settings(toml, env={"LABELER_K": "7", "LABELER_K_RANGE": "3,9"}, method=None, min_cluster_size=9)
    assert (s.pca_components, s.method, s.k, s.k_range, s.min_cluster_size) == (64, "kmeans", 7, [3, 9], 9)
    assert load_settings(None, env={}) == Settings()


def test_bad_values(tmp_path):
    with pytest.raises(ValueError, match="LABELER_K"):
        load_settings(None, env={"LABELER_K": "many"})
    bad = tmp_path / "labeler.toml"
    bad.write_text("k = [")
    with pytest.raises(ValueError, match="labeler.toml"):
        load_settings(bad, env={})
    with pytest.raises(TypeError, match="unknown setting"):
        Settings().updated(colour="red")
