"""EmbeddingExplorer in a real JupyterLab: a box drawn with the mouse arrives in the kernel as
the right indices, for glyphs (Bokeh hit-tests, Selection1D) and for a 200k-point datashader
raster (BoundsXY geometry, indices computed in the kernel) within 2 s of the mouse-up."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from browser_harness import jupyter_lab_server, lab  # noqa: F401  (pytest fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Points are generated in the kernel from this seed and recomputed here to know the truth.
SETUP = """
import json, os, time
import numpy as np
from workbench._io import atomic_write_json
from widgets import EmbeddingExplorer

N, SEED, STATE = {n}, {seed}, {state!r}
rng = np.random.default_rng(SEED)
xy = rng.uniform(0, 1, (N, 2))
scores = rng.random(N)
labels = np.where(scores > 0.9, "odd", "usual")
images = {images}

def _record(event):
    atomic_write_json(STATE, {{"t": time.time(), "index": [int(i) for i in event.new]}})
"""

SHOW = """
ex = EmbeddingExplorer(xy, labels=labels, scores=scores, images=images, mode={mode!r}, width=520, height=420)
ex.param.watch(_record, "selected_index")
ex
"""


def _points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 2))


def _expected(xy: np.ndarray, a: tuple[float, float], b: tuple[float, float], tol: float):
    """Indices surely inside the data box spanned by ``a`` and ``b`` (shrunk by ``tol``) and
    those possibly inside (grown by ``tol``): pixel rounding decides the ones in between."""
    x0, x1 = sorted((a[0], b[0]))
    y0, y1 = sorted((a[1], b[1]))
    x, y = xy[:, 0], xy[:, 1]
    must = np.flatnonzero((x > x0 + tol[0]) & (x < x1 - tol[0]) & (y > y0 + tol[1]) & (y < y1 - tol[1]))
    may = np.flatnonzero((x >= x0 - tol[0]) & (x <= x1 + tol[0]) & (y >= y0 - tol[1]) & (y <= y1 + tol[1]))
    return must, may


def _drag_box(lab, state_path, xy, data_a, data_b):
    """Drag a box between two data points on the explorer's plot; return (indices, kernel
    latency s, page latency s, must, may)."""
    plot = lab.wait_for_bokeh_plot(lambda p: p.width > 300)
    assert plot.active_drag == "BoxSelectTool", f"box select must be the active drag tool; found {plot.active_drag}"
    start = tuple(round(v) for v in plot.to_page(*data_a))
    end = tuple(round(v) for v in plot.to_page(*data_b))
    # tolerance: 1.5 px in data units on each axis
    tol = (1.5 * (plot.x_range[1] - plot.x_range[0]) / plot.width,
           1.5 * (plot.y_range[1] - plot.y_range[0]) / plot.height)
    must, may = _expected(xy, plot.to_data(*start), plot.to_data(*end), tol)

    m = lab.page.mouse
    m.move(*start)
    m.down()
    m.move(*end, steps=15)
    t_up = time.time()
    m.up()

    def recorded():
        if state_path.exists():
            return json.loads(state_path.read_text())
        return None

    state = lab.wait_for(recorded, timeout=30, interval=0.02, what="the selection in the kernel")
    kernel_latency = state["t"] - t_up
    want = f"{len(state['index'])} of {len(xy)} selected"
    lab.wait_for(lambda: want in lab.text(".wb-selection-count", timeout=2), timeout=30, interval=0.02,
                 what=f"the page to show '{want}'")
    page_latency = time.time() - t_up
    return np.array(state["index"], np.int64), kernel_latency, page_latency, must, may


def _drag_lasso(lab, xy, triangle, previous):
    """Activate the lasso from the toolbar, draw ``triangle`` (data coordinates) with the
    mouse; return the settled selection in the kernel and the points inside the drawn polygon."""
    from matplotlib.path import Path

    plot = lab.wait_for_bokeh_plot(lambda p: p.width > 300)
    lab.activate_bokeh_tool(plot.id, "LassoSelectTool")
    corners = [tuple(round(v) for v in plot.to_page(*c)) for c in triangle]
    lab.drag(corners[0], corners[0], path=corners[1:], steps=20)
    expect = np.flatnonzero(Path(np.array([plot.to_data(*c) for c in corners])).contains_points(xy))

    def settled():  # glyph lassos select continuously while drawing: wait for the last one
        first = lab.kernel_json("ex.selected_index.tolist()")
        time.sleep(0.5)
        again = lab.kernel_json("ex.selected_index.tolist()")
        return again if again == first and again != previous else None

    got = lab.wait_for(settled, timeout=15, what="the lasso selection in the kernel")
    return np.array(got, np.int64), expect


@pytest.mark.parametrize("n, mode, seed", [(500, "glyph", 1), (200_000, "raster", 2)],
                         ids=["500-glyphs", "200k-datashader"])
def test_box_selection_with_the_mouse_reaches_the_kernel(lab, record_property, n, mode, seed):
    state_path = lab.server.root_dir / f"state-{mode}.json"
    images = "rng.integers(0, 255, (N, 8, 8), dtype=np.uint8)" if n <= 1000 else "None"
    nb = lab.write_notebook(f"explore-{mode}.ipynb", [
        SETUP.format(n=n, seed=seed, state=str(state_path), images=images),
        SHOW.format(mode=mode),
    ])
    t0 = time.time()
    lab.open(nb)
    lab.run_all(timeout=180)
    t_ready = time.time() - t0
    assert lab.kernel_json("ex.mode") == mode

    xy = _points(n, seed)
    index, kernel_latency, page_latency, must, may = _drag_box(lab, state_path, xy, (0.22, 0.71), (0.63, 0.28))
    record_property("kernel_latency_s", round(kernel_latency, 3))
    record_property("page_latency_s", round(page_latency, 3))
    print(f"\n{mode} n={n}: notebook ready {t_ready:.1f} s; selection of {len(index)} points in the kernel "
          f"{kernel_latency * 1000:.0f} ms and on the page {page_latency * 1000:.0f} ms after the mouse-up")
    lab.screenshot(f"{mode}-after-selection")  # kept in the test's tmp dir for a look

    assert len(must) > 0.1 * n * 0.41 * 0.43  # the box really covers a good share of the points
    missing = np.setdiff1d(must, index)
    extra = np.setdiff1d(index, may)
    assert missing.size == 0, f"{missing.size} points well inside the box were not selected: {missing[:10]}"
    assert extra.size == 0, f"{extra.size} points well outside the box were selected: {extra[:10]}"
    assert np.array_equal(index, np.sort(index))
    assert lab.kernel_json("ex.selected_index.tolist()") == index.tolist()  # the accessor agrees
    if mode == "raster":
        assert kernel_latency < 2.0, f"200k-point selection took {kernel_latency:.2f} s to reach the kernel"
    if images != "None":  # the gallery shows thumbnails of the selection (data: URLs, no network)
        thumbs = lab.locator(".wb-gallery-pane img")
        lab.wait_for(lambda: thumbs.count() >= min(len(index), 48), timeout=10, what="gallery thumbnails")

    # recolouring keeps the selection (the plot re-renders; the kernel-side state must not reset)
    lab.execute("ex.color_by = 'score'")
    time.sleep(1.0)
    assert lab.kernel_json("ex.selected_index.tolist()") == index.tolist()

    # a lasso drawn with the mouse after the box (a real user's sequence)
    lasso, expect = _drag_lasso(lab, xy, [(0.3, 0.25), (0.85, 0.3), (0.55, 0.85)], index.tolist())
    print(f"lasso: {len(lasso)} selected, {len(expect)} inside the drawn triangle")
    off = np.setxor1d(lasso, expect).size
    assert off <= max(3, 0.01 * len(expect)), f"lasso: {off} of {len(expect)} points differ"


GMM_NOTEBOOK = """
import numpy as np
from sklearn.datasets import make_blobs
from widgets import GMMInspector

X, _ = make_blobs(450, centers=[[0, 0], [10, 0], [0, 10]], cluster_std=1.0, random_state=0)
insp = GMMInspector(X, n_components=range(1, 6), contamination=0.05)
insp
"""


def test_gmm_threshold_slider_moves_the_flagged_set(lab):
    nb = lab.write_notebook("gmm.ipynb", [GMM_NOTEBOOK])
    lab.open(nb)
    lab.run_all(timeout=180)
    before = lab.kernel_json("[insp.threshold, len(insp.flagged_index), insp.n_components_]")
    assert before[2] == 3  # the BIC minimum of three blobs
    handle = lab.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed(timeout=10_000)
    box = lab.wait_for(lambda: handle.bounding_box(timeout=2000), timeout=20, what="the threshold slider")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    lab.drag((x, y), (x + 120, y), steps=10)  # to the right: a higher threshold flags more rows

    state = "[insp.threshold, len(insp.flagged_index), insp.n_components_]"

    def settled():  # the slider sends values while it moves: wait for the last one
        first = lab.kernel_json(state)
        time.sleep(0.4)
        again = lab.kernel_json(state)
        return again if again == first and again[0] > before[0] + 1e-9 else None

    threshold, flagged, _ = lab.wait_for(settled, timeout=20, what="a new, settled threshold in the kernel")
    assert flagged > before[1]
    exact = lab.kernel_json("bool(np.array_equal(insp.flagged_index, np.flatnonzero(insp.loglik < insp.threshold)))")
    assert exact
    lab.wait_for(lambda: f"{lab.kernel_json('len(insp.flagged_index)')} of 450" in lab.text(".wb-flag-count"),
                 timeout=15, what="the flagged count on the page")
    assert not lab.blocked


COUNTER = '''
import anywidget, traitlets

class Counter(anywidget.AnyWidget):
    _esm = """
    function render({ model, el }) {
      const b = document.createElement("button");
      b.className = "harness-counter";
      const show = () => { b.textContent = `count ${model.get("value")}`; };
      b.addEventListener("click", () => { model.set("value", model.get("value") + 1); model.save_changes(); });
      model.on("change:value", show);
      show();
      el.appendChild(b);
      return () => model.off("change:value", show);
    }
    export default { render };
    """
    value = traitlets.Int(0).tag(sync=True)

w = Counter()
w
'''


def test_harness_drives_an_anywidget(lab):
    """The harness example for anywidgets (see browser_harness's docstring), checked."""
    lab.open(lab.write_notebook("counter.ipynb", [COUNTER]))
    lab.run_all()
    button = lab.locator("button.harness-counter")
    button.click(timeout=20_000)
    button.click(timeout=5_000)
    assert lab.wait_for(lambda: lab.kernel_json("w.value") == 2, timeout=10, what="two clicks in the kernel")
    lab.execute("w.value = 7")  # kernel -> page
    lab.wait_for(lambda: button.inner_text(timeout=2000) == "count 7", timeout=10, what="the page to show 7")
