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


def test_the_settings_the_project_writes_load_back_unchanged(tmp_path):
    """Every key save_settings / save_setting writes is one load_settings accepts."""
    from labeler.config import save_setting

    toml = tmp_path / "labeler.toml"
    save_settings(Settings(), toml)
    assert load_settings(toml, env={}) == Settings()
    for name, value in [("imagenet_hints", False), ("imagenet_hint_min_prob", 1.01),
                        ("map_raster_threshold", 20), ("map_sample_points", 25)]:
        save_setting(toml, name, value)
    s = load_settings(toml, env={})
    assert (s.imagenet_hints, s.imagenet_hint_min_prob, s.map_raster_threshold, s.map_sample_points) == (
        False, 1.01, 20, 25)
    toml.write_text("umap_min_dist = 0\nnovelty_percentile = 5\n")  # integers where floats are expected
    s = load_settings(toml, env={})
    assert (s.umap_min_dist, s.novelty_percentile) == (0.0, 5.0) and isinstance(s.umap_min_dist, float)


@pytest.mark.parametrize("text, message", [
    ("pca_dim = 64", "labeler.toml: unknown key 'pca_dim' (did you mean 'pca_components'?)"),
    ("colour = 'red'", "labeler.toml: unknown key 'colour' (settings: backbone, "),
    ("umap_neighbours = 10", "unknown key 'umap_neighbours' (did you mean 'umap_neighbors'?)"),
    ("min_cluster_size = 'ten'", "labeler.toml: 'min_cluster_size' must be an integer >= 2, got 'ten'"),
    ("min_cluster_size = 1", "labeler.toml: 'min_cluster_size' must be an integer >= 2, got 1"),
    ("pca_components = 1", "'pca_components' must be an integer >= 2, got 1"),
    ("pca_components = 64.0", "'pca_components' must be an integer >= 2, got 64.0"),
    ("batch_size = true", "'batch_size' must be an integer >= 1, got True"),
    ("umap_min_dist = 1.5", "'umap_min_dist' must be a number in [0, 1], got 1.5"),
    ("novelty_percentile = -1", "'novelty_percentile' must be a number in [0, 100], got -1"),
    ("imagenet_hint_min_prob = -0.1", "'imagenet_hint_min_prob' must be a number >= 0"),
    ("imagenet_hints = 'yes'", "'imagenet_hints' must be true or false, got 'yes'"),
    ("method = 'dbscan'", "'method' must be one of 'hdbscan', 'kmeans', got 'dbscan'"),
    ("backbone = 'vgg16'", "'backbone' must be one of 'auto', 'resnet50', "),
    ("view = 'zoom'", "'view' must be one of 'whole', 'crop', got 'zoom'"),
    ("k_range = [5, 3]", "'k_range' must be a list [low, high] of two integers with 2 <= low <= high, got [5, 3]"),
    ("k_range = [2, 3, 4]", "'k_range' must be a list"),
    ("weights = 3", "'weights' must be a string"),
])
def test_the_toml_file_is_validated_with_one_line_naming_file_and_key(tmp_path, text, message):
    from labeler.errors import BadInputError

    toml = tmp_path / "labeler.toml"
    toml.write_text(text + "\n")
    with pytest.raises(BadInputError) as e:
        load_settings(toml, env={})
    assert str(e.value).startswith(f"{toml}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_environment_and_overrides_are_validated_too(tmp_path):
    from labeler.config import save_setting
    from labeler.errors import BadInputError

    with pytest.raises(BadInputError, match=r"^LABELER_MIN_CLUSTER_SIZE: 'min_cluster_size' must be an integer >= 2, got 1$"):
        load_settings(None, env={"LABELER_MIN_CLUSTER_SIZE": "1"})
    with pytest.raises(BadInputError, match="LABELER_IMAGENET_HINTS='maybe'"):
        load_settings(None, env={"LABELER_IMAGENET_HINTS": "maybe"})
    assert load_settings(None, env={"LABELER_IMAGENET_HINTS": "off"}).imagenet_hints is False
    with pytest.raises(BadInputError, match=r"^settings: 'method' must be one of"):
        load_settings(None, env={}, method="spectral")
    toml = tmp_path / "labeler.toml"
    with pytest.raises(BadInputError, match=r"labeler.toml: unknown key 'imagenet_hint' \(did you mean 'imagenet_hints'\?\)"):
        save_setting(toml, "imagenet_hint", True)
    with pytest.raises(BadInputError, match="'map_sample_points' must be an integer >= 1, got 0"):
        save_setting(toml, "map_sample_points", 0)
    assert not toml.exists()  # nothing was written
