"""EmbeddingExplorer and GMMInspector driven in Python through their streams and params
(the same paths a browser interaction takes; the real browser is tests/test_browser_embedding.py)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import DataError

pytest.importorskip("panel")
pytest.importorskip("holoviews")

from widgets import EmbeddingExplorer, GMMInspector  # noqa: E402
from widgets._embedding import points_in_box, points_in_polygon  # noqa: E402


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    n = 400
    xy = rng.normal(size=(n, 2))
    labels = np.where(rng.random(n) < 0.1, "defect", "good")
    scores = rng.random(n)
    images = rng.integers(0, 255, (n, 12, 12), dtype=np.uint8)
    return xy, labels, scores, images


def _brute_box(xy, b):
    x0, y0, x1, y1 = b
    return np.array([i for i, (x, y) in enumerate(xy) if x0 <= x <= x1 and y0 <= y <= y1], np.int64)


# -- geometry ---------------------------------------------------------------------------------
def test_points_in_box_and_polygon_match_brute_force():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-1, 1, (5000, 2))
    b = (-0.3, -0.2, 0.4, 0.5)
    assert np.array_equal(points_in_box(xy, b), _brute_box(xy, b))
    assert np.array_equal(points_in_box(xy, (0.4, 0.5, -0.3, -0.2)), _brute_box(xy, b))  # any corner order
    tri = np.array([[0, 0], [1, 0], [0, 1]])
    inside = points_in_polygon(xy, tri)
    expect = np.flatnonzero((xy[:, 0] > 0) & (xy[:, 1] > 0) & (xy.sum(1) < 1))
    assert np.array_equal(inside, expect)
    assert inside.dtype == np.int64
    assert points_in_polygon(xy, tri[:2]).size == 0


# -- EmbeddingExplorer, glyph mode ------------------------------------------------------------
def test_glyph_selection_from_the_selection1d_stream(cloud):
    xy, labels, scores, images = cloud
    ex = EmbeddingExplorer(xy, labels=labels, scores=scores, images=images)
    assert ex.mode == "glyph" and ex.bounds_stream is None
    assert ex.color_by == "label" and ex.param.color_by.objects == ["none", "label", "score"]
    ex.__panel__()
    ex.selection_stream.event(index=[30, 2, 2, 17])
    assert ex.selected_index.dtype == np.int64 and ex.selected_index.tolist() == [2, 17, 30]
    assert "<b>3</b> of 400 selected" in ex._count.object
    html = ex._gallery.object
    assert html.count('class="wb-thumb"') == 3 and html.count("data:image/png;base64,") == 3
    # highest score first
    order = [int(s.split('"')[0]) for s in html.split('data-index="')[1:]]
    assert order == sorted([2, 17, 30], key=lambda i: -scores[i])
    ex.selection_stream.event(index=[])
    assert ex.selected_index.size == 0 and "Select points" in ex._gallery.object


def test_subsets_and_programmatic_selection(cloud):
    xy, labels, scores, _ = cloud
    ex = EmbeddingExplorer(xy, labels=labels, scores=scores)
    ex.select([5, 1])
    ex.save_subset("pair")
    ex.select(np.arange(len(xy)) % 2 == 0)  # a boolean mask
    assert ex.selected_index.size == len(xy) // 2
    ex.save_subset("even")
    assert set(ex.subsets) == {"pair", "even"} and ex.subsets["pair"].tolist() == [1, 5]
    ex.show_subset("pair")
    assert ex.selected_index.tolist() == [1, 5]
    ex.subsets["pair"][0] = 99  # subsets are copies of the selection, not views of it
    assert ex.selected_index.tolist() == [1, 5]
    ex.delete_subset("even")
    assert set(ex.subsets) == {"pair"}
    df = ex.to_dataframe()
    assert df["selected"].sum() == 2 and list(df.columns[:2]) == ["x", "y"] and "subset:pair" in df
    with pytest.raises(KeyError, match="no subset"):
        ex.show_subset("nope")
    with pytest.raises(IndexError):
        ex.select([len(xy)])
    with pytest.raises(ValueError, match="non-empty"):
        ex.save_subset("  ")


def test_colour_options_and_validation(cloud):
    xy, labels, scores, images = cloud
    comps = (xy[:, 0] > 0).astype(int)
    ex = EmbeddingExplorer(xy, color="component", labels=labels, scores=scores, components=comps)
    assert ex.color_by == "component"
    import holoviews as hv

    plot = hv.renderer("bokeh").get_plot(ex._plot)  # a live plot: colour changes update it in place
    for option in ["score", "label", "none", "component", "score"]:
        ex.color_by = option  # categorical <-> continuous on the same glyph
        colors = ex.point_colors()
        assert colors.shape == (len(xy),) and all(c.startswith("#") for c in colors)
        assert (option in ex.legend_html()) == (option == "score")
    assert len(set(ex.point_colors("label"))) == 2 and len(set(ex.point_colors("none"))) == 1
    assert ex.point_colors("score")[np.argmax(scores)] == "#FDE724"  # top of Viridis
    del plot
    custom = EmbeddingExplorer(xy, color=xy[:, 1])
    assert custom.color_by == "custom" and not custom._columns["custom"]["categorical"]
    assert EmbeddingExplorer(xy).color_by == "none"
    with pytest.raises(DataError, match="labels has 3 entries"):
        EmbeddingExplorer(xy, labels=[1, 2, 3])
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        EmbeddingExplorer(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="color must be"):
        EmbeddingExplorer(xy, color="score")  # no scores given


def test_gallery_shows_maps_and_truncates(cloud):
    xy, labels, scores, images = cloud
    maps = [np.full((6, 6), s, np.float32) for s in scores]
    ex = EmbeddingExplorer(xy, images=images, maps=maps, scores=scores, max_gallery=5)
    ex.select(range(40))
    html = ex.gallery_html()
    assert html.count('class="wb-thumb"') == 5 and html.count("data:image/png") == 10
    assert "showing 5 of 40" in html
    assert ex._get_map_range() == (float(np.float32(scores.min())), float(np.float32(scores.max())))


# -- EmbeddingExplorer, datashader mode -------------------------------------------------------
def test_raster_mode_selects_from_box_and_lasso_geometry():
    rng = np.random.default_rng(2)
    xy = rng.normal(size=(30_000, 2))
    ex = EmbeddingExplorer(xy, scores=rng.random(len(xy)), datashade_threshold=20_000)
    assert ex.mode == "raster" and ex.selection_stream is None
    ex.__panel__()
    b = (-0.5, -1.0, 0.7, 0.2)
    ex.bounds_stream.event(bounds=b)
    assert np.array_equal(ex.selected_index, points_in_box(xy, b))
    assert np.array_equal(ex.selected_index, np.flatnonzero((xy[:, 0] >= -0.5) & (xy[:, 0] <= 0.7)
                                                            & (xy[:, 1] >= -1.0) & (xy[:, 1] <= 0.2)))
    assert f"<b>{ex.selected_index.size}</b> of 30000" in ex._count.object
    lasso = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    ex.lasso_stream.event(geometry=lasso)
    expect = np.flatnonzero((xy[:, 0] > 0) & (xy[:, 0] < 2) & (xy[:, 1] > 0) & (xy[:, 1] < 2))
    assert np.array_equal(ex.selected_index, expect)
    # no selection geometry (a click) leaves the selection alone
    ex.bounds_stream.event(bounds=None)
    assert np.array_equal(ex.selected_index, expect)
    assert "score" in ex.legend_html()


def test_raster_image_highlights_the_selection():
    pts = np.array([[x, y] for x in np.linspace(0, 10, 40) for y in np.linspace(0, 10, 40)] + [[2.0, 8.0]])
    ex = EmbeddingExplorer(pts, mode="raster", width=100, height=100, labels=np.arange(len(pts)) % 3,
                           scores=np.linspace(0, 1, len(pts)))
    import holoviews as hv

    live = hv.renderer("bokeh").get_plot(ex._plot)
    for option in ["score", "none", "label"]:  # every colouring renders, with a selection too
        ex.color_by = option
        ex.select([0, 5])
    ex.clear_selection()
    del live
    ex.color_by = "none"
    plain = ex._raster(width=100, height=100)
    img = ex._raster(width=100, height=100, selected_index=[len(pts) - 1], color_by="none")
    assert plain.bounds.lbrt() == img.bounds.lbrt()
    alpha = img.data[..., 3]
    rows, cols = np.nonzero(alpha == 255)
    # (2, 8) sits in the upper-left: row 0 of the RGB element is the top of the plot
    (l, b, r, t) = img.bounds.lbrt()
    row, col = (t - 8.0) / (t - b) * 100, (2.0 - l) / (r - l) * 100
    assert abs(rows.mean() - row) < 2 and abs(cols.mean() - col) < 2
    assert (plain.data[..., 3].max() == 255) and alpha.max() == 255


# -- GMMInspector -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blobs():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(450, centers=[[0, 0], [10, 0], [0, 10]], cluster_std=1.0, random_state=0)
    return X, y


def test_gmm_inspector_bic_minimum_at_three(blobs):
    X, _ = blobs
    insp = GMMInspector(X, n_components=range(1, 7))
    assert insp.sweep.best_n_components == 3 and insp.n_components_ == 3
    assert int(np.argmin(insp.sweep.bic)) == 2
    assert insp.loglik.shape == (len(X),) and insp.components.shape == (len(X),)
    assert len(insp.ellipses) == 3
    table = insp.component_table()
    assert table["size"].sum() == len(X) and np.isclose(table["weight"].sum(), 1)
    assert sorted(table["size"]) == [150, 150, 150]


def test_gmm_threshold_flags_exactly_the_rows_below_it(blobs):
    X, _ = blobs
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(3, random_state=0).fit(X)
    insp = GMMInspector(gmm, X, contamination=0.1)
    ll = gmm.score_samples(X)
    assert np.isclose(insp.threshold, np.quantile(ll, 0.1))
    previous = None
    for t in np.linspace(ll.min() - 1, ll.max() + 1, 25):
        insp.threshold = float(t)
        assert insp.flagged_index.dtype == np.int64
        assert np.array_equal(insp.flagged_index, np.flatnonzero(ll < t))
        if previous is not None:
            assert set(previous) <= set(insp.flagged_index)  # monotone in the threshold
        previous = insp.flagged_index
    assert previous.size == len(X)
    insp.threshold = float(ll.min())
    assert insp.flagged_index.size == 0  # strictly below


def test_gmm_inspector_views_and_component_panel(blobs):
    X, _ = blobs
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (len(X), 10, 10, 3), dtype=np.uint8)
    insp = GMMInspector(X, n_components=[2, 3, 4], images=images, max_gallery=4)
    insp.__panel__()
    assert "rows have log-likelihood" in insp._flag_text.object
    insp.threshold = float(np.median(insp.loglik))
    assert f"<b>{len(X) // 2}</b> of {len(X)}" in insp._flag_text.object
    assert "<table" in insp._table.object
    flagged = insp._flagged_pane.object
    assert flagged.count("data:image/png") == 4  # the 4 least likely rows (max_gallery)
    worst = int(np.argmin(insp.loglik))
    assert f"#{worst} " in flagged
    insp.component = 1
    html = insp._component_pane.object
    assert "component 1" in html and html.count("data:image/png") == 1 + 4
    members = insp.members(1)
    assert (insp.components[members] == 1).all() and members.size == 150
    import holoviews as hv

    # live plots: moving the threshold updates them in place
    plots = [hv.renderer("bokeh").get_plot(p) for p in (insp.scatter_plot(), insp.criteria_plot(),
                                                        insp.histogram_plot())]
    for t in (float(insp.loglik.min()), float(np.quantile(insp.loglik, 0.2))):
        insp.threshold = t
    assert len(plots) == 3


def test_gmm_inspector_on_high_dimensional_rows():
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 10, (2, 6))
    X = centers[rng.integers(0, 2, 300)] + rng.normal(size=(300, 6))
    insp = GMMInspector(X, n_components=range(1, 4))
    assert insp.n_components_ == 2 and insp.points.shape == (300, 2)
    with pytest.raises(ValueError, match="needs X"):
        GMMInspector(insp.gmm)
    # a fitted workbench GMMDetector: its mixture lives on standardised features
    detectors = pytest.importorskip("workbench.detectors")
    det = detectors.GMMDetector(max_components=3).fit(X)
    from_det = GMMInspector(det, X)
    assert from_det.n_components_ == det.n_components_
    assert np.allclose(from_det.loglik, det.gmm_.score_samples((X - det.location_) / det.scale_))
    with pytest.raises(DataError, match=r"\(n, 6\)"):
        GMMInspector(insp.gmm, X[:, :3])
