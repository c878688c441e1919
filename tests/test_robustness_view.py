"""ClickRobustnessView driven in Python through its HoloViews streams (Tap, PointerXY), its caption
and the Bokeh model it renders to."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import types

import numpy as np
import pytest

from widgets import ClickRobustnessView
from workbench.errors import DataError

H, W = 60, 90


def make_result(iou_map, worst, best, natural, *, label=1, previous_clicks=(), iou_previous=None, **overrides):
    """A ClickRobustness (workbench.robustness) with these values; a namespace with the same
    fields where that module is absent."""
    iou = np.asarray(iou_map, dtype=np.float64)
    allowed = np.isfinite(iou)
    rows, cols = np.nonzero(allowed)
    grid = np.stack([rows[::7], cols[::7], np.full(len(rows[::7]), label)], axis=1)
    values = dict(iou_map=iou.astype(np.float32), iou_min=float(iou[worst[:2]]), iou_max=float(iou[best[:2]]),
                  iou_natural=float(iou[natural[:2]]), worst_click=tuple(worst), best_click=tuple(best),
                  natural_click=tuple(natural), label=label, allowed=allowed, grid_clicks=grid,
                  grid_ious=iou[grid[:, 0], grid[:, 1]], previous_clicks=tuple(previous_clicks),
                  iou_previous=iou_previous, search={})
    values["delta"] = values["iou_max"] - values["iou_min"]
    values.update(overrides)
    if importlib.util.find_spec("workbench.robustness") is not None:
        from workbench.robustness import ClickRobustness

        return ClickRobustness(**values)
    return types.SimpleNamespace(**values)


@pytest.fixture
def cone():
    """IoU falling off from (30, 40); NaN (not allowed) in the top five rows."""
    yy, xx = np.mgrid[0:H, 0:W]
    iou = np.clip(1 - np.hypot(yy - 30, xx - 40) / 60, 0, 1)
    iou[:5] = np.nan
    img = ((xx * 2 + yy) % 256).astype(np.uint8)
    return make_result(iou, (59, 89, 1), (30, 40, 1), (33, 45, 1)), img


def test_caption_reports_min_natural_max_and_delta(cone):
    res, img = cone
    view = ClickRobustnessView(res, img)
    cap = view.caption()
    for v in (res.iou_min, res.iou_natural, res.iou_max, res.delta):
        assert f"{v:.3f}" in cap
    assert "at (row 59, col 89)" in cap and "at (row 30, col 40)" in cap and "at (row 33, col 45)" in cap
    assert view.natural_click == (33, 45, 1) and view.worst_click == (59, 89, 1)
    assert f"delta {res.delta:.3f}" in repr(view)


def test_tap_selects_a_click_and_reports_its_iou(cone):
    res, img = cone
    view = ClickRobustnessView(res, img)
    assert view.selected_click is None and view.selected_iou is None
    view.tap_stream.event(x=40.2, y=30.9)  # plot x = column, y = row; pixel (30, 40) covers [40, 41) x [30, 31)
    assert view.selected_click == (30, 40, 1) and view.selected_iou == pytest.approx(res.iou_map[30, 40])
    view.tap_stream.event(x=12.99, y=50.0)
    assert view.selected_click == (50, 12, 1) and view.selected_iou == pytest.approx(res.iou_map[50, 12])
    view.tap_stream.event(x=10.0, y=2.0)  # not allowed: NaN, still reported
    assert view.selected_click == (2, 10, 1) and math.isnan(view.selected_iou)
    view.tap_stream.event(x=W + 0.5, y=10.0)  # beside the image: nothing selected
    assert view.selected_click is None and view.selected_iou is None
    assert view.iou_at(30, 40) == res.iou_map[30, 40]
    with pytest.raises(ValueError, match="outside"):
        view.iou_at(H, 0)


def test_hover_updates_the_readout_on_the_page(cone):
    res, img = cone
    view = ClickRobustnessView(res, img)
    layout = view.__panel__()
    readout = view._readout
    assert "hover over the map" in readout.object
    view.pointer_stream.event(x=45.5, y=33.5)
    assert view.hover == (33, 45, pytest.approx(res.iou_map[33, 45]))
    assert f"pointer (row 33, col 45): IoU {res.iou_map[33, 45]:.3f}" in readout.object
    view.tap_stream.event(x=40.5, y=30.5)
    assert "selected (row 30, col 40): IoU 1.000" in readout.object
    view.pointer_stream.event(x=-3, y=10)
    assert view.hover is None and "pointer" not in readout.object
    assert layout is view.__panel__()


def _bokeh(view):
    import panel as pn
    from bokeh.models import Plot

    root = pn.panel(view).get_root()
    plots = list(root.select({"type": Plot}))
    assert len(plots) == 1
    return root, plots[0]


def test_renders_to_bokeh_with_a_fixed_iou_scale_markers_and_an_active_tap(cone):
    from bokeh.models import ColorBar, Image, ImageRGBA, Scatter, TapTool

    res, img = cone
    view = ClickRobustnessView(res, img)
    _, plot = _bokeh(view)
    assert isinstance(plot.toolbar.active_tap, TapTool)
    glyphs = [r.glyph for r in plot.renderers]
    iou_glyph = next(g for g in glyphs if isinstance(g, Image))
    mapper = iou_glyph.color_mapper
    assert (mapper.low, mapper.high) == (0, 1) and mapper.nan_color == "rgba(0, 0, 0, 0)"  # NaN: see-through
    assert sum(isinstance(g, ImageRGBA) for g in glyphs) == 1
    assert sum(isinstance(g, Scatter) for g in glyphs) == 4  # worst, best, natural, selected
    assert any(isinstance(c, ColorBar) for c in plot.right + plot.below + plot.center)
    src = next(r.data_source for r in plot.renderers if r.glyph is iou_glyph)
    assert np.allclose(src.data["image"][0], res.iou_map, equal_nan=True)  # full map, NaNs kept
    assert iou_glyph.global_alpha == pytest.approx(0.7)
    pad = 0.02 * W
    assert (plot.y_range.start, plot.y_range.end) == pytest.approx((H + pad, -pad))  # rows grow downward
    assert (plot.x_range.start, plot.x_range.end) == pytest.approx((-pad, W + pad))
    legend = " ".join(item.label["value"] for lg in plot.legend for item in lg.items)
    assert f"worst click, IoU {res.iou_min:.3f}" in legend and f"best click, IoU {res.iou_max:.3f}" in legend
    assert "natural click" in legend
    # the opacity slider and a tap update the live plot
    selected = [r for r in plot.renderers if isinstance(r.glyph, Scatter)][-1].data_source
    assert len(selected.data["col"]) == 0
    view.alpha = 0.3
    view.tap_stream.event(x=45.2, y=33.7)
    assert iou_glyph.global_alpha == pytest.approx(0.3)
    assert list(selected.data["col"]) == [45.5] and list(selected.data["row"]) == [33.5]


def test_large_images_are_shown_subsampled_but_positions_are_full_resolution():
    h, w = 2048, 1536
    yy, xx = np.mgrid[0:h, 0:w]
    iou = (xx / (w - 1)).astype(np.float64)
    res = make_result(iou, (0, 0, 1), (5, w - 1, 1), (1000, 700, 1))
    rgb = np.zeros((h, w, 3), np.uint8)
    view = ClickRobustnessView(res, rgb, max_display=512)
    _, plot = _bokeh(view)
    from bokeh.models import Image

    src = next(r.data_source for r in plot.renderers if isinstance(r.glyph, Image))
    assert max(src.data["image"][0].shape) <= 512
    view.tap_stream.event(x=1234.7, y=2000.2)
    assert view.selected_click == (2000, 1234, 1) and view.selected_iou == pytest.approx(1234 / (w - 1))


def test_bad_input_is_refused_with_clear_errors(cone):
    res, img = cone
    with pytest.raises(DataError, match=r"iou_map has shape \(60, 90\) but the image is \(60, 80\)"):
        ClickRobustnessView(res, img[:, :80])
    with pytest.raises(TypeError, match="no iou_map"):
        ClickRobustnessView(types.SimpleNamespace(iou_min=0), img)
    bad = make_result(res.iou_map * 2, (59, 89, 1), (30, 40, 1), (33, 45, 1))
    with pytest.raises(DataError, match="IoUs are in"):
        ClickRobustnessView(bad, img)
    if isinstance(res, types.SimpleNamespace):
        far = types.SimpleNamespace(**{**vars(res), "worst_click": (H + 1, 0, 1)})
    else:
        far = dataclasses.replace(res, worst_click=(H + 1, 0, 1))
    with pytest.raises(DataError, match="worst_click.*outside"):
        ClickRobustnessView(far, img)
    with pytest.raises(DataError, match="dtype float64"):
        ClickRobustnessView(res, img.astype(float))


def test_a_later_negative_click_result_shows_its_previous_clicks(cone):
    res, img = cone
    neg = make_result(res.iou_map, (59, 89, -1), (30, 40, -1), (33, 45, -1), label=-1,
                      previous_clicks=[(20, 20, 1), (25, 60, -1)], iou_previous=0.61)
    view = ClickRobustnessView(neg, img)
    assert "click 3 (negative) after 2 previous clicks, IoU before it 0.610" in view.caption()
    assert "after" not in ClickRobustnessView(res, img).caption()  # a first click needs no such line
    view.tap_stream.event(x=40.5, y=30.5)
    assert view.selected_click == (30, 40, -1)
    from bokeh.models import Scatter

    _, plot = _bokeh(view)
    markers = {r.glyph.marker: r.data_source.data for r in plot.renderers if isinstance(r.glyph, Scatter)}
    assert list(markers["plus"]["col"]) == [20.5] and list(markers["dash"]["row"]) == [25.5]
    legend = " ".join(item.label["value"] for lg in plot.legend for item in lg.items)
    assert "previous positive clicks" in legend and "previous negative clicks" in legend


def test_shows_a_real_click_robustness_result():
    from workbench.robustness import click_robustness

    class Disk:  # grows a disk of radius 10 around the first positive click
        def predict(self, image, clicks):
            yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
            r, c, _ = next(c for c in clicks if c[2] > 0)
            return (yy - r) ** 2 + (xx - c) ** 2 <= 100

    yy, xx = np.mgrid[0:H, 0:W]
    gt = (yy - 30) ** 2 + (xx - 45) ** 2 <= 144
    img = np.where(gt, 200, 50).astype(np.uint8)
    res = click_robustness(Disk(), img, gt, stride=4, whitebox=False)
    view = ClickRobustnessView(res, img)
    assert view.natural_click == tuple(res.natural_click) and view.label == 1
    assert np.isnan(view.iou_map[0, 0]) and np.isfinite(view.iou_map[30, 45])  # outside / inside the object
    cap = view.caption()
    assert f"IoU min <b>{res.iou_min:.3f}</b>" in cap and f"max <b>{res.iou_max:.3f}</b>" in cap
    r, c, _ = res.best_click
    view.tap_stream.event(x=c + 0.5, y=r + 0.5)
    assert view.selected_click == (r, c, 1) and view.selected_iou == pytest.approx(float(res.iou_map[r, c]))
    _bokeh(view)  # renders
