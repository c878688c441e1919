"""workbench.embedding: cached, reproducible projections; image features; GMM helpers."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from workbench import embedding
from workbench.embedding import (
    component_ellipses,
    ellipse,
    embedding_cache_dir,
    find_images,
    fit_gmms,
    image_features,
    project,
)
from workbench.embedding import _project as project_module
from workbench.errors import DataError


def _blobs(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 8, (3, d))
    return (centers[rng.integers(0, 3, n)] + rng.normal(size=(n, d))).astype(np.float32)


def _entries(cache_dir):
    return sorted(p for p in cache_dir.rglob("*.npz"))


# -- project: PCA (fast) ---------------------------------------------------------------------
def test_pca_shape_dtype_and_default_cache_location():
    X = _blobs()
    out = project(X, "pca")
    assert out.shape == (len(X), 2) and out.dtype == np.float32 and out.flags.c_contiguous
    assert embedding_cache_dir() == embedding.embedding_cache_dir()
    assert embedding_cache_dir().name == "embedding"
    assert _entries(embedding_cache_dir()), "the projection was not cached under embedding_cache_dir()"
    # the first two principal axes of three separated blobs keep the blobs apart
    assert np.ptp(out[:, 0]) > 5


def test_cache_hit_is_identical_and_skips_the_computation(tmp_path, monkeypatch):
    X = _blobs()
    first = project(X, "pca", cache_dir=tmp_path)
    assert len(_entries(tmp_path)) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed despite a valid cache entry")

    monkeypatch.setattr(project_module, "_compute", boom)
    second = project(X, "pca", cache_dir=tmp_path)
    assert np.array_equal(first, second)
    assert not list(tmp_path.rglob("*.tmp")), "atomic write left a temporary file"


def test_cache_key_depends_on_content_and_every_setting():
    X = _blobs()
    key = project_module.projection_cache_key
    base = key(X, "pca", 2, 0, False, {})
    assert base == key(X.copy(), "pca", 2, 0, False, {})
    X2 = X.copy()
    X2[5, 3] += 1e-3
    others = {
        key(X2, "pca", 2, 0, False, {}),
        key(X.astype(np.float64), "pca", 2, 0, False, {}),
        key(X, "umap", 2, 0, False, {}),
        key(X, "pca", 3, 0, False, {}),
        key(X, "pca", 2, 1, False, {}),
        key(X, "pca", 2, 0, True, {}),
        key(X, "pca", 2, 0, False, {"whiten": True}),
    }
    assert base not in others and len(others) == 7


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_content"])
def test_damaged_cache_entry_is_recomputed(tmp_path, caplog, damage):
    X = _blobs()
    good = project(X, "pca", cache_dir=tmp_path)
    (entry,) = _entries(tmp_path)
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "garbage":
        entry.write_bytes(b"not a zip file at all")
    else:  # a valid file whose payload does not match its checksum
        with np.load(entry) as z:
            parts = dict(z)
        parts["embedding"] = parts["embedding"] + 1
        with open(entry, "wb") as fh:
            np.savez(fh, **parts)
    with caplog.at_level(logging.WARNING, logger="workbench.embedding._project"):
        again = project(X, "pca", cache_dir=tmp_path)
    assert np.array_equal(good, again)
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert np.array_equal(project(X, "pca", cache_dir=tmp_path), good)  # the entry was rewritten


def test_cache_off_and_unseeded_runs_write_nothing(tmp_path):
    X = _blobs()
    project(X, "pca", cache=False, cache_dir=tmp_path)
    project(X, "pca", random_state=None, cache_dir=tmp_path)
    assert not _entries(tmp_path)


def test_standardize_removes_the_scale_of_columns(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    X[:, 0] *= 1000  # without scaling, PC1 is column 0
    raw = project(X, "pca", cache_dir=tmp_path)
    std = project(X, "pca", standardize=True, cache_dir=tmp_path)
    assert abs(np.corrcoef(raw[:, 0], X[:, 0])[0, 1]) > 0.999
    assert abs(np.corrcoef(std[:, 0], X[:, 0])[0, 1]) < 0.9


@pytest.mark.parametrize("bad, match", [
    (np.zeros(5), "2-D"),
    (np.zeros((0, 3)), "empty"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (np.array([["a", "b"]]), "numeric"),
])
def test_bad_inputs_say_what_is_wrong(bad, match):
    with pytest.raises(DataError, match=match):
        project(bad, "pca", cache=False)


def test_bad_settings():
    X = _blobs(20, 3)
    with pytest.raises(ValueError, match="method"):
        project(X, "tsne")
    with pytest.raises(DataError, match="PCA to 4 components"):
        project(X, "pca", n_components=4, cache=False)
    with pytest.raises(TypeError, match="random_state"):
        project(X, "pca", random_state=np.random.RandomState(0))


# -- project: UMAP (one test: the first call compiles numba code, ~20 s) ----------------------
@pytest.mark.slow
def test_umap_is_reproducible_bitwise_and_cached(tmp_path, monkeypatch):
    X = _blobs(250, 8)
    a = project(X, "umap", random_state=0, cache=False, n_neighbors=10)
    b = project(X, "umap", random_state=0, cache=False, n_neighbors=10)
    assert a.shape == (250, 2) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes(), "same input and seed must give a bitwise identical layout"
    c = project(X, "umap", random_state=0, cache_dir=tmp_path, n_neighbors=10)
    assert c.tobytes() == a.tobytes()
    monkeypatch.setattr(project_module, "_compute", lambda *a, **k: pytest.fail("cache miss"))
    assert project(X, "umap", random_state=0, cache_dir=tmp_path, n_neighbors=10).tobytes() == a.tobytes()
    # the three blobs stay apart in the layout: nearest-centroid labels agree with the blobs
    from sklearn.cluster import KMeans

    blob = KMeans(3, n_init=4, random_state=0).fit_predict(X)
    lay = KMeans(3, n_init=4, random_state=0).fit_predict(a)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(blob, lay) > 0.95


# -- image features --------------------------------------------------------------------------
def _write_images(root, n=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        size = (40 + 8 * i, 32)  # different sizes: image_features resizes them to one size
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        p = sub / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / ".hidden" / "x.png")
    (root / "notes.txt").write_text("not an image")
    return paths


def test_find_images_sorted_recursive_skips_hidden(tmp_path):
    paths = _write_images(tmp_path)
    found = find_images(tmp_path)
    assert found == sorted(paths, key=lambda p: p.relative_to(tmp_path).as_posix())
    assert find_images(tmp_path / "a", recursive=False) == sorted(p for p in paths if p.parent.name == "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        find_images(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder"):
        find_images(tmp_path / "missing")


def test_image_features_pool_two_stages_and_use_the_cache(tmp_path):
    _write_images(tmp_path)
    paths = find_images(tmp_path)
    X = image_features(paths, image_size=(64, 64))
    assert X.shape == (4, 112 + 320) and X.dtype == np.float32 and np.isfinite(X).all()
    # each stage's pooled vector has unit norm
    assert np.allclose(np.linalg.norm(X[:, :112], axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(X[:, 112:], axis=1), 1, atol=1e-5)
    # arrays give the same vectors as the files they came from
    from workbench.datasets import read_image

    X2 = image_features([read_image(p) for p in paths], image_size=(64, 64), cache=False)
    assert np.allclose(X, X2, atol=1e-5)
    raw = image_features(paths[:1], image_size=(64, 64), normalize=False)
    assert not np.isclose(np.linalg.norm(raw[0, :112]), 1)


# -- GMM helpers -----------------------------------------------------------------------------
def _three_blobs(n=450, seed=0):
    from sklearn.datasets import make_blobs

    return make_blobs(n, centers=[[0, 0], [12, 0], [0, 12]], cluster_std=1.0, random_state=seed)


def test_fit_gmms_bic_minimum_at_three_for_three_blobs():
    X, _ = _three_blobs()
    sweep = fit_gmms(X, range(1, 7), random_state=0)
    assert list(sweep.n_components) == [1, 2, 3, 4, 5, 6]
    assert sweep.best_n_components == 3 and sweep.best.n_components == 3
    assert sweep.to_dataframe().shape == (6, 3)
    again = fit_gmms(X, 6, random_state=0)
    assert np.array_equal(sweep.bic, again.bic)


def test_ellipse_is_the_two_sigma_contour():
    mean, cov = np.array([1.0, -2.0]), np.array([[4.0, 1.5], [1.5, 1.0]])
    e = ellipse(mean, cov, n_std=2.0)
    d = e - mean
    maha = np.sqrt(np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d))
    assert np.allclose(maha, 2.0) and np.allclose(e[0], e[-1])


def test_component_ellipses_exact_in_2d_and_moment_matched_on_a_projection():
    from sklearn.mixture import GaussianMixture

    X, _ = _three_blobs()
    for kind in ("full", "tied", "diag", "spherical"):
        gmm = GaussianMixture(3, covariance_type=kind, random_state=0).fit(X)
        ells = component_ellipses(gmm)
        assert len(ells) == 3
        for e, m in zip(ells, gmm.means_):
            assert np.allclose(e.mean(0), m, atol=0.2)
    # a mixture in 5-D drawn on the first two coordinates: ellipses centre on each blob
    rng = np.random.default_rng(0)
    X5 = np.hstack([X, rng.normal(size=(len(X), 3))])
    gmm5 = GaussianMixture(3, random_state=0).fit(X5)
    ells = component_ellipses(gmm5, points_2d=X, X=X5)
    centres = sorted(tuple(np.round(e[:-1].mean(0))) for e in ells)
    assert centres == sorted([(0.0, 0.0), (12.0, 0.0), (0.0, 12.0)])
    with pytest.raises(ValueError, match="points_2d"):
        component_ellipses(gmm5)


# -- load_vectors ----------------------------------------------------------------------------
def test_load_vectors_digits_table_and_errors(tmp_path):
    from workbench.embedding import load_vectors, novelty_split

    d = load_vectors("digits", novel_class=9)
    assert d.X.shape == (1797, 64) and d.kind == "digits" and d.images.shape == (1797, 8, 8)
    assert d.anomaly.sum() == (d.labels == 9).sum() and not d.standardize
    sub = d.subset([5, 0, 7])
    assert sub.n_rows == 3 and sub.labels.tolist() == d.labels[[5, 0, 7]].tolist() and sub.names[0] == "digit #5"
    mask = novelty_split(d.anomaly, 0.6, random_state=0)
    assert not (mask & (d.anomaly == 1)).any() and abs(mask.sum() - 0.6 * (d.anomaly == 0).sum()) <= 1
    assert np.array_equal(mask, novelty_split(d.anomaly, 0.6, random_state=0))

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", X=rng.normal(size=(30, 4)), y=(np.arange(30) < 3).astype(int))
    t = load_vectors("t.npz", root=tmp_path)
    assert t.kind == "table" and t.standardize and t.anomaly.sum() == 3 and t.images is None
    with pytest.raises(DataError, match="does not exist"):
        load_vectors("missing.csv", root=tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder and not a table"):
        load_vectors(tmp_path / "notes.txt")


def test_load_vectors_image_folders(tmp_path):
    from PIL import Image

    from workbench.embedding import load_vectors

    _write_images(tmp_path / "plain")
    v = load_vectors(tmp_path / "plain", image_size=(64, 64))
    assert v.kind == "images" and v.X.shape == (4, 432) and sorted(set(v.labels)) == ["a", "b"]
    assert v.anomaly is None and v.names[0] == "a/img1.png"
    # MVTec layout: split/kind labels, anomaly labels and the training split
    root = tmp_path / "mvtec"
    rng = np.random.default_rng(0)
    for folder, n in (("train/good", 3), ("test/good", 1), ("test/crack", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(root / folder / f"{i:03d}.png")
    m = load_vectors(root, image_size=(64, 64))
    assert m.kind == "mvtec" and m.n_rows == 6
    assert m.labels.tolist() == ["train/good"] * 3 + ["test/good", "test/crack", "test/crack"]
    assert m.anomaly.tolist() == [0, 0, 0, 0, 1, 1] and m.fit_mask.tolist() == [True] * 3 + [False] * 3
