"""ClickRobustnessView: how much a click segmenter's IoU depends on where the first click lands.

Shows a :class:`~workbench.robustness.ClickRobustness` result (TETRIS-style min/max IoU over
click positions) over its image: the IoU map on a fixed 0..1 colour scale (transparent outside
the allowed region, where the map is NaN), the worst, best and natural clicks marked, and a
caption with ``iou_min``, ``iou_natural``, ``iou_max`` and ``delta``. Hovering reports the IoU
under the pointer (HoloViews ``PointerXY`` stream); tapping selects a position
(``Tap`` stream) and :attr:`ClickRobustnessView.selected_click` gives it as a click.

Coordinates: the plot's x is the image column and y the image row (y axis pointing down), both
in image pixels, so pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``. Images
larger than ``max_display`` pixels are shown subsampled; positions and IoUs always refer to the
full-resolution map.
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
import param

from widgets._click_prompter import _as_image
from widgets._embedding import HTMLText, _View
from workbench.errors import DataError

__all__ = ["ClickRobustnessView"]

_FIELDS = ("iou_map", "iou_min", "iou_natural", "iou_max", "delta", "worst_click", "best_click")
WORST, BEST, NATURAL, SELECTED = "#d62728", "#1a9850", "#1f77b4", "#ffffff"


def _fmt(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{float(v):.3f}"


def _click(value, name: str, shape) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        row, col, *rest = value
        label = int(rest[0]) if rest else 1
        row, col = int(row), int(col)
    except (TypeError, ValueError):
        raise DataError(f"ClickRobustnessView: result.{name} must be a click (row, col, label); "
                        f"got {value!r}") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise DataError(f"ClickRobustnessView: result.{name} = {value!r} is outside the {shape[0]}x{shape[1]} image")
    return row, col, label


class ClickRobustnessView(_View, pn.viewable.Viewer):
    """The IoU map of a click-robustness analysis over its image, with the extreme clicks marked.

    Parameters
    ----------
    result : ClickRobustness
        What :func:`workbench.robustness.click_robustness` returns (any object with the fields
        ``iou_map`` (float ``(H, W)``, NaN outside the allowed region), ``iou_min``,
        ``iou_natural``, ``iou_max``, ``delta``, ``worst_click`` and ``best_click``
        (``(row, col, label)``); ``natural_click``, ``label`` (+1 or -1) and ``previous_clicks``
        are used when present: previous clicks are marked, the selected click gets the label).
    image : ndarray, path or Sample
        The image the clicks were made on: uint8 ``(H, W)`` or ``(H, W, 3)``, same size as the map.
    natural_click : (row, col, label), optional
        Where a user would click (default ``result.natural_click`` when the result has it).
    cmap : str, default "RdYlGn"
        Colour map of the IoU (red = low, green = high) on the fixed range 0..1.
    alpha : float, default 0.7
        Opacity of the IoU map over the image (a slider changes it).
    max_display : int, default 720
        Longest side, in plot pixels; larger images are shown subsampled.

    Attributes
    ----------
    selected_click : (int, int, int) or None
        The last tapped position as a click ``(row, col, label)`` (``label`` is the result's:
        +1 for a first click).
    selected_iou : float or None
        The IoU at :attr:`selected_click` (NaN outside the allowed region).
    hover : (int, int, float) or None
        ``(row, col, iou)`` under the pointer.
    tap_stream, pointer_stream : holoviews.streams.Tap, holoviews.streams.PointerXY
        The streams behind them (``view.tap_stream.event(x=col, y=row)`` does what a tap does).

    Examples
    --------
    >>> res = click_robustness(segmenter, image, gt_mask)             # doctest: +SKIP
    >>> view = ClickRobustnessView(res, image); view                  # doctest: +SKIP
    >>> view.selected_click, view.selected_iou                        # doctest: +SKIP
    """

    selected_click = param.Parameter(default=None, doc="The tapped position as a click (row, col, label).")
    selected_iou = param.Number(default=None, allow_None=True, doc="IoU at the tapped position.")
    hover = param.Parameter(default=None, doc="(row, col, iou) under the pointer.")
    alpha = param.Number(default=0.7, bounds=(0.0, 1.0), doc="Opacity of the IoU map.")

    def __init__(self, result, image, *, natural_click=None, cmap: str = "RdYlGn", alpha: float = 0.7,
                 max_display: int = 720, **params):
        missing = [f for f in _FIELDS if not hasattr(result, f)]
        if missing:
            raise TypeError(f"ClickRobustnessView: result has no {', '.join(missing)}; expected a ClickRobustness "
                            f"from workbench.robustness.click_robustness (got {type(result).__name__})")
        arr, _ = _as_image(image, "ClickRobustnessView")
        iou = np.asarray(result.iou_map, dtype=np.float64)
        if iou.shape != arr.shape[:2]:
            raise DataError(f"ClickRobustnessView: result.iou_map has shape {iou.shape} but the image is "
                            f"{arr.shape[:2]} (H, W); pass the image the analysis was run on")
        finite = iou[np.isfinite(iou)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
            raise DataError(f"ClickRobustnessView: result.iou_map has values in [{finite.min():.3g}, "
                            f"{finite.max():.3g}]; IoUs are in [0, 1] (NaN outside the allowed region)")
        if int(max_display) < 16:
            raise ValueError(f"ClickRobustnessView: max_display must be at least 16 pixels; got {max_display}")
        super().__init__(alpha=alpha, **params)
        self.result = result
        self.image = arr
        self.iou_map = iou
        self.cmap = cmap
        self.max_display = int(max_display)
        shape = iou.shape
        self.worst_click = _click(result.worst_click, "worst_click", shape)
        self.best_click = _click(result.best_click, "best_click", shape)
        if natural_click is None:
            natural_click = getattr(result, "natural_click", None)
        self.natural_click = _click(natural_click, "natural_click", shape)
        self.label = int(getattr(result, "label", 1))
        if self.label not in (1, -1):
            raise DataError(f"ClickRobustnessView: result.label must be +1 or -1; got {self.label}")
        self.previous_clicks = [_click(c, "previous_clicks", shape) for c in getattr(result, "previous_clicks", ())]
        self._layout = None
        self._plot = None
        self._make_streams()

    # -- values ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.iou_map.shape)

    def iou_at(self, row: int, col: int) -> float:
        """IoU of a first click at pixel ``(row, col)`` (NaN outside the allowed region)."""
        h, w = self.shape
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"ClickRobustnessView: ({row}, {col}) is outside the {h}x{w} image")
        return float(self.iou_map[row, col])

    def _pixel(self, x, y) -> tuple[int, int] | None:
        """Image pixel ``(row, col)`` under the plot point ``(x, y)``; None outside the image."""
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            return None
        row, col = math.floor(y), math.floor(x)
        h, w = self.shape
        return (row, col) if 0 <= row < h and 0 <= col < w else None

    # -- streams ----------------------------------------------------------------------------------
    def _make_streams(self) -> None:
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401 - the Bokeh backend's options

        element = self._iou_image()

        def iou_layer(alpha):
            return element.opts(
                backend="bokeh", clone=True, cmap=self.cmap, clim=(0, 1), colorbar=True, alpha=alpha,
                clipping_colors={"NaN": (0, 0, 0, 0)}, tools=["hover", "tap"], hover_tooltips=[("IoU", "@IoU{0.000}")],
                colorbar_opts={"title": "IoU"})

        self._iou_layer = hv.DynamicMap(iou_layer, streams=[self.param.alpha])
        self.tap_stream = hv.streams.Tap(source=self._iou_layer, x=None, y=None)
        self.pointer_stream = hv.streams.PointerXY(source=self._iou_layer, x=None, y=None)
        self.tap_stream.add_subscriber(self._on_tap)
        self.pointer_stream.add_subscriber(self._on_pointer)

    def _on_tap(self, x=None, y=None, **_) -> None:
        pix = self._pixel(x, y)
        if pix is None:
            self.param.update(selected_click=None, selected_iou=None)
        else:
            self.param.update(selected_click=(pix[0], pix[1], self.label), selected_iou=float(self.iou_map[pix]))

    def _on_pointer(self, x=None, y=None, **_) -> None:
        pix = self._pixel(x, y)
        self.hover = None if pix is None else (pix[0], pix[1], float(self.iou_map[pix]))

    # -- plot ---------------------------------------------------------------------------------------
    def _grid(self):
        """Display stride and the pixel-centre coordinates of the shown (subsampled) grid."""
        h, w = self.shape
        k = max(1, math.ceil(max(h, w) / self.max_display))
        xs = np.arange(0, w, k, dtype=np.float64) + k / 2
        ys = np.arange(0, h, k, dtype=np.float64) + k / 2
        return k, xs, ys

    def _iou_image(self):
        import holoviews as hv

        k, xs, ys = self._grid()
        return hv.Image((xs, ys, self.iou_map[::k, ::k]), kdims=["col", "row"],
                        vdims=[hv.Dimension("IoU", range=(0, 1))])

    def _size(self) -> tuple[int, int]:
        h, w = self.shape
        scale = min(self.max_display, max(h, w) * 4, 560) / max(h, w)
        return max(60, round(w * scale)), max(60, round(h * scale))

    def plot(self):
        """The HoloViews overlay: image, IoU map, markers of the worst/best/natural/selected clicks."""
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401 - the Bokeh backend's options

        k, xs, ys = self._grid()
        rgb = self.image if self.image.ndim == 3 else np.repeat(self.image[..., None], 3, axis=2)
        rgb = rgb[::k, ::k]
        base = hv.RGB((xs, ys, rgb[..., 0], rgb[..., 1], rgb[..., 2]), kdims=["col", "row"]).opts(backend="bokeh")

        marks = []
        res = self.result
        for click, name, iou, color, marker in [
                (self.worst_click, "worst", res.iou_min, WORST, "inverted_triangle"),
                (self.best_click, "best", res.iou_max, BEST, "triangle"),
                (self.natural_click, "natural", getattr(res, "iou_natural", None), NATURAL, "circle")]:
            if click is None:
                continue
            r, c, _ = click  # (the result's IoU: a searched click can beat the map's nearest grid value)
            marks.append(hv.Points([(c + 0.5, r + 0.5)], kdims=["col", "row"],
                                   label=f"{name} click, IoU {_fmt(iou)}").opts(
                backend="bokeh", marker=marker, size=17, color=color, line_color="black", line_width=2))

        for label, color, marker in [(1, "#2e7d32", "plus"), (-1, "#c62828", "dash")]:
            pts = [(c + 0.5, r + 0.5) for r, c, lab in self.previous_clicks if lab == label]
            if pts:
                name = "positive" if label > 0 else "negative"
                marks.append(hv.Points(pts, kdims=["col", "row"], label=f"previous {name} clicks").opts(
                    backend="bokeh", marker=marker, size=14, color=color, line_color="white", line_width=1))

        def selected(selected_click):
            pts = [] if selected_click is None else [(selected_click[1] + 0.5, selected_click[0] + 0.5)]
            return hv.Points(pts, kdims=["col", "row"]).opts(backend="bokeh", marker="x", size=14, color=SELECTED,
                                                             line_width=3)

        sel = hv.DynamicMap(selected, streams=[self.param.selected_click])
        fw, fh = self._size()
        h, w = self.shape
        pad = 0.02 * max(h, w)  # markers on the border (a worst click in a corner) stay visible
        overlay = base * self._iou_layer
        for mark in marks:
            overlay = overlay * mark
        overlay = (overlay * sel).opts(
            backend="bokeh", frame_width=fw, frame_height=fh, xaxis=None, yaxis=None, invert_yaxis=True,
            xlim=(-pad, w + pad), ylim=(-pad, h + pad), legend_position="bottom", legend_cols=3,
            active_tools=["tap"], toolbar="above",
            title="IoU of the first click at each position")
        return overlay

    # -- text -------------------------------------------------------------------------------------
    def caption(self) -> str:
        """HTML: iou_min, iou_natural, iou_max and delta, with the worst and best clicks."""
        r = self.result

        def at(click):
            return "" if click is None else f" at (row {click[0]}, col {click[1]})"

        parts = [
            f'<span style="color:{WORST}">&#9660; IoU min <b>{_fmt(r.iou_min)}</b>{at(self.worst_click)}</span>',
            f'<span style="color:{NATURAL}">&#9679; natural <b>{_fmt(r.iou_natural)}</b>'
            f'{at(self.natural_click)}</span>',
            f'<span style="color:{BEST}">&#9650; max <b>{_fmt(r.iou_max)}</b>{at(self.best_click)}</span>',
            f"<span>delta <b>{_fmt(r.delta)}</b></span>",
        ]
        text = " &nbsp;·&nbsp; ".join(parts)
        if self.previous_clicks or self.label < 0:
            kind = "positive" if self.label > 0 else "negative"
            n = len(self.previous_clicks)
            before = getattr(r, "iou_previous", None)
            text += (f"<br>click {n + 1} ({kind}) after {n} previous click{'s' if n != 1 else ''}"
                     + (f", IoU before it {_fmt(before)}" if before is not None else ""))
        return f'<div class="wb-robustness-caption">{text}</div>'

    def readout(self) -> str:
        """HTML: the IoU under the pointer and at the selected position."""
        bits = []
        if self.hover is not None:
            r, c, v = self.hover
            bits.append(f"pointer (row {r}, col {c}): IoU {_fmt(v)}")
        if self.selected_click is not None:
            r, c, _ = self.selected_click
            bits.append(f"selected (row {r}, col {c}): IoU {_fmt(self.selected_iou)}")
        text = " &nbsp;·&nbsp; ".join(bits) if bits else "hover over the map for the IoU; tap to select a position"
        return f'<div class="wb-robustness-readout">{text}</div>'

    @param.depends("hover", "selected_click", "selected_iou", watch=True)
    def _update_readout(self) -> None:
        if self._layout is not None:
            self._readout.object = self.readout()

    # -- layout -----------------------------------------------------------------------------------
    def __panel__(self):
        if self._layout is None:
            self._layout = self._make_layout()
        return self._layout

    def _make_layout(self):
        fw, _ = self._size()
        self._readout = HTMLText(self.readout(), css_classes=["wb-robustness-readout"], width=fw + 120)
        slider = pn.widgets.FloatSlider.from_param(self.param.alpha, name="IoU map opacity", width=220)
        pane = pn.pane.HoloViews(self.plot(), backend="bokeh", linked_axes=False)
        caption = HTMLText(self.caption(), css_classes=["wb-robustness-caption"], width=fw + 120)
        return pn.Column(caption, pane, self._readout, slider)

    def __repr__(self) -> str:
        h, w = self.shape
        r = self.result
        return (f"ClickRobustnessView({h}x{w}, IoU min {_fmt(r.iou_min)}, natural {_fmt(r.iou_natural)}, "
                f"max {_fmt(r.iou_max)}, delta {_fmt(r.delta)})")

