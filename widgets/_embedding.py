"""EmbeddingExplorer: a scatter of a 2-D embedding, linked to a gallery of what is selected.

Built on HoloViews + Bokeh inside a Panel layout. Up to ``datashade_threshold`` points are
drawn as glyphs and Bokeh's box/lasso tools select them (``Selection1D`` delivers the exact
indices). Above it the scatter is rasterised with datashader (200k points stay fluid); a
raster has no glyphs to hit, so the box or lasso *geometry* comes back through HoloViews'
``BoundsXY`` / ``Lasso`` streams and the indices are computed here, vectorised.

This module also holds the small pieces the workbench's Panel views share: :func:`extension`
(loads Panel's JavaScript *inline*, so views work without internet) and thumbnail helpers.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import panel as pn
import param

from workbench.errors import DataError

__all__ = ["EmbeddingExplorer", "HTMLText", "extension", "points_in_box", "points_in_polygon", "thumbnail_png"]

HIGHLIGHT = "#000000"


# -- Panel set-up ----------------------------------------------------------------------------
def extension(*args, **kwargs) -> None:
    """Load Panel and HoloViews' Bokeh backend for this notebook, with JavaScript *inline*.

    ``pn.extension()`` alone makes JupyterLab fetch BokehJS and Panel from CDNs, which fails
    offline (checked in the real-browser tests); this inlines them into the output instead.
    Views of this package call it on first display, so calling it yourself is optional.
    Extra arguments go to ``pn.extension``.
    """
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401 - registers the Bokeh backend's options
    import panel as pn

    kwargs.setdefault("inline", True)
    pn.extension(*args, **kwargs)
    hv.Store.set_current_backend("bokeh")


def _panel_loaded() -> bool:
    from panel.config import panel_extension

    return bool(panel_extension._loaded)


class HTMLText(pn.pane.HTML):
    """An HTML pane whose content updates never resend its stylesheets.

    Panel 1.9 re-sends every stylesheet of an HTML/Markdown pane as a CDN link each time its
    ``object`` changes, even after ``pn.extension(inline=True)``: the browser then fetches
    ``cdn.holoviz.org`` (seen in the real-browser tests), which fails offline. The
    stylesheets inlined at the first render stay valid, so updates carry the content only.
    """

    def _update(self, ref, model) -> None:
        props = self._get_properties(model.document)
        props.pop("stylesheets", None)
        model.update(**props)


class _View:
    """Mixin for Panel ``Viewer`` classes: load the extension inline on first display."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not _panel_loaded():
            extension()
        return super()._repr_mimebundle_(include, exclude)


# -- geometry --------------------------------------------------------------------------------
def points_in_box(points: np.ndarray, bounds: Sequence[float]) -> np.ndarray:
    """Sorted int64 indices of the rows of ``points`` ``(n, 2)`` inside the closed box
    ``bounds = (left, bottom, right, top)`` (any corner order)."""
    x0, y0, x1, y1 = (float(b) for b in bounds)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    x, y = points[:, 0], points[:, 1]
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).astype(np.int64)


def points_in_polygon(points: np.ndarray, polygon) -> np.ndarray:
    """Sorted int64 indices of the rows of ``points`` ``(n, 2)`` inside ``polygon`` ``(m, 2)``
    (closed automatically; even-odd rule). Rows outside the polygon's bounding box are
    rejected first, so a small lasso on 200k points costs little."""
    from matplotlib.path import Path

    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        return np.zeros(0, np.int64)
    candidates = points_in_box(points, (*poly.min(0), *poly.max(0)))
    if len(candidates) == 0:
        return candidates
    inside = Path(poly, closed=False).contains_points(points[candidates])
    return candidates[inside]


def _highlight(rgba: np.ndarray, points: np.ndarray, x_range, y_range, dim: float = 0.3) -> None:
    """Mark ``points`` on a raster in place: pixels they cover keep their colour at full opacity
    (grown by one pixel), the rest fade to ``dim`` of their opacity, and a one-pixel outline in
    :data:`HIGHLIGHT` surrounds the selection. ``rgba`` is ``(h, w, 4)`` uint8 with row 0 at
    ``y_range[0]``. Plain numpy (no numba compile): the first selection is as quick as the next."""
    from scipy import ndimage

    h, w = rgba.shape[:2]
    (x0, x1), (y0, y1) = x_range, y_range
    cx = np.floor((points[:, 0] - x0) / (x1 - x0) * w).astype(np.int64)
    cy = np.floor((points[:, 1] - y0) / (y1 - y0) * h).astype(np.int64)
    ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    hit = np.zeros((h, w), bool)
    hit[cy[ok], cx[ok]] = True
    core = ndimage.binary_dilation(hit, iterations=1)
    # outline the selected *area* (gaps between its points closed), not every point
    region = ndimage.binary_fill_holes(ndimage.binary_closing(core, iterations=2)) | core
    ring = ndimage.binary_dilation(region, iterations=1) & ~region
    alpha = rgba[..., 3]
    alpha[~core] = (alpha[~core] * dim).astype(np.uint8)
    covered = core & (alpha == 0)
    rgba[covered, :3] = (60, 60, 60)  # a selected point on a pixel the base left empty
    alpha[core] = 255
    rgba[ring, :3] = [int(HIGHLIGHT[i:i + 2], 16) for i in (1, 3, 5)]
    alpha[ring] = 255


# -- thumbnails ------------------------------------------------------------------------------
def _as_display_uint8(image) -> np.ndarray:
    """``uint8`` ``(H, W)`` or ``(H, W, 3)`` for display from a gray/RGB(A) array of any dtype."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise DataError(f"cannot show an image of shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return (a // 257).astype(np.uint8)
    f = a.astype(np.float64)
    lo, hi = np.nanmin(f), np.nanmax(f)
    if lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scale = hi - lo if hi > lo else 1.0
    return (np.clip((f - lo) / scale, 0, 1) * 255).round().astype(np.uint8)


def _resize(a: np.ndarray, size: int):
    from PIL import Image

    im = Image.fromarray(a)
    w, h = im.size
    s = size / max(w, h)
    new = (max(1, round(w * s)), max(1, round(h * s)))
    resample = Image.NEAREST if s >= 2 else Image.BILINEAR
    return im.resize(new, resample)


def thumbnail_png(image, size: int = 64) -> bytes:
    """PNG bytes of ``image`` (an array or an image file path) scaled so its longer side is ``size``."""
    if isinstance(image, (str, os.PathLike)):
        from workbench.datasets import read_image

        image = read_image(image)
    buf = io.BytesIO()
    _resize(_as_display_uint8(image), size).save(buf, format="PNG")
    return buf.getvalue()


def _heat_lut() -> np.ndarray:
    from bokeh.palettes import Inferno256

    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in Inferno256], np.uint8)


def map_png(amap, size: int = 64, vrange: tuple[float, float] | None = None) -> bytes:
    """PNG bytes of an anomaly map ``(H, W)`` coloured with Inferno on the fixed range ``vrange``
    (higher = more anomalous = brighter); the map's own range if None."""
    m = np.asarray(amap, dtype=np.float64)
    lo, hi = vrange if vrange is not None else (np.nanmin(m), np.nanmax(m))
    t = np.clip((m - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgb = _heat_lut()[(np.nan_to_num(t) * 255).astype(np.int64)]
    buf = io.BytesIO()
    _resize(rgb, size).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class _ThumbnailCache:
    """Data URLs of thumbnails, computed on demand and kept (least recently used out)."""

    def __init__(self, render, maxsize: int = 4096):
        self._render = render
        self._cache: OrderedDict[int, str] = OrderedDict()
        self.maxsize = maxsize

    def __call__(self, i: int) -> str:
        i = int(i)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        url = _data_url(self._render(i))
        self._cache[i] = url
        if len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return url


def _item(images, i: int):
    item = images[i]
    if hasattr(item, "image") and callable(item.image):  # a workbench.datasets.Sample
        return item.image()
    return item


def _check_len(name: str, values, n: int):
    if values is None:
        return None
    if len(values) != n:
        raise DataError(f"EmbeddingExplorer: {name} has {len(values)} entries; expected {n}, one per point")
    return values


def _palette(n: int) -> list[str]:
    from bokeh.palettes import Category10, Category20

    base = list(Category10[10]) if n <= 10 else list(Category20[20])
    return [base[i % len(base)] for i in range(n)]


def _gallery_html(items: list[str], total: int, shown: int, empty: str) -> str:
    if total == 0:
        return f'<div class="wb-gallery-empty" style="color:#666;font:13px sans-serif">{html.escape(empty)}</div>'
    more = "" if shown >= total else (f'<div style="font:12px sans-serif;color:#444;width:100%">'
                                       f'showing {shown} of {total}</div>')
    return ('<div class="wb-gallery" style="display:flex;flex-wrap:wrap;gap:6px;align-content:flex-start">'
            + more + "".join(items) + "</div>")


# -- the explorer ----------------------------------------------------------------------------
class EmbeddingExplorer(_View, pn.viewable.Viewer):
    """Interactive scatter of a 2-D embedding with a gallery of the selected samples.

    Parameters
    ----------
    points_2d : array-like of shape (n, 2)
        The embedding (e.g. :func:`workbench.embedding.project`).
    color : {"label", "score", "component", "none"} or array-like of shape (n,), optional
        What colours the points at first: one of the given columns, or values of its own
        (numbers: a continuous scale; anything else: categories). Default: labels, else
        scores, else components. Changeable later with :attr:`color_by`.
    images : sequence of length n, optional
        Image file paths, arrays ``(H, W)`` / ``(H, W, 3)``, or ``workbench.datasets.Sample``
        objects; the gallery shows thumbnails of the selected ones.
    labels : array-like of shape (n,), optional
        Categories (class, defect kind, 0/1 anomaly flag).
    scores : array-like of shape (n,), optional
        Anomaly scores (higher = more anomalous); the gallery shows the highest first.
    maps : sequence of length n of arrays ``(H, W)``, optional
        Anomaly maps shown beside the thumbnails on one colour range (``map_range``).
    components : array-like of int of shape (n,), optional
        GMM component of every point (e.g. ``gmm.predict(X)``).
    names : sequence of str, optional
        Captions (file names); default the point's index.
    datashade_threshold : int, default 20_000
        Above this many points the scatter is rasterised with datashader.
    mode : {"auto", "glyph", "raster"}, default "auto"
        Force glyphs or the raster whatever the size.
    width, height : int
        Plot size in pixels.
    thumbnail_size : int, default 64
    max_gallery : int, default 48
        At most this many thumbnails are shown (the selection itself is not truncated).
    map_range : (float, float), optional
        Colour range of ``maps``; default the min and max over all maps.

    Attributes
    ----------
    selected_index : numpy.ndarray
        Sorted int64 indices of the selected points (a ``param``; watch it with
        ``explorer.param.watch(fn, "selected_index")``).
    color_by : str
        Current colouring.
    subsets : dict of str to numpy.ndarray
        Named selections kept with :meth:`save_subset`.
    selection_stream : holoviews.streams.Selection1D or None
        Glyph mode: the stream Bokeh's box/lasso selections arrive on.
    bounds_stream, lasso_stream : holoviews.streams.BoundsXY, holoviews.streams.Lasso or None
        Raster mode: the box and lasso geometries. In tests, drive the view like the browser
        does: ``explorer.bounds_stream.event(bounds=(x0, y0, x1, y1))``.

    Examples
    --------
    >>> ex = EmbeddingExplorer(xy, labels=y, scores=s, images=paths)
    >>> ex                                # displays in JupyterLab; select with the box tool
    >>> ex.selected_index                 # array([  3,  17, ...])
    >>> ex.save_subset("odd cluster")
    """

    selected_index = param.Array(default=np.zeros(0, np.int64), doc="Sorted int64 indices of the selection.")
    color_by = param.Selector(default="none", objects=["none"], doc="What colours the points.")
    subsets = param.Dict(default={}, doc="Named selections (name -> sorted int64 indices).")

    def __init__(self, points_2d, color=None, images=None, labels=None, scores=None, maps=None, *,
                 components=None, names=None, datashade_threshold: int = 20_000, mode: str = "auto",
                 width: int = 600, height: int = 500, thumbnail_size: int = 64, max_gallery: int = 48,
                 map_range: tuple[float, float] | None = None, **params):
        super().__init__(**params)
        P = np.asarray(points_2d)
        if P.ndim != 2 or P.shape[1] != 2 or P.shape[0] == 0:
            raise DataError(f"EmbeddingExplorer: points_2d must be (n, 2) with n >= 1; found shape {P.shape}")
        if not np.issubdtype(P.dtype, np.number) or not np.isfinite(P).all():
            raise DataError("EmbeddingExplorer: points_2d must be finite numbers")
        self.points = np.ascontiguousarray(P, dtype=np.float64)
        n = self.n = len(self.points)
        self.images = _check_len("images", images, n)
        self.maps = _check_len("maps", maps, n)
        self.names = None if names is None else [str(s) for s in _check_len("names", names, n)]
        if mode not in ("auto", "glyph", "raster"):
            raise ValueError(f"mode must be 'auto', 'glyph' or 'raster'; got {mode!r}")
        self.mode = ("raster" if n > int(datashade_threshold) else "glyph") if mode == "auto" else mode
        self.width, self.height = int(width), int(height)
        self.thumbnail_size, self.max_gallery = int(thumbnail_size), int(max_gallery)
        self._columns: dict[str, dict[str, Any]] = {}
        if labels is not None:
            self._add_column("label", _check_len("labels", labels, n), categorical=True)
        if scores is not None:
            s = np.asarray(_check_len("scores", scores, n), dtype=np.float64)
            self._add_column("score", s, categorical=False)
        if components is not None:
            self._add_column("component", np.asarray(_check_len("components", components, n)).astype(np.int64),
                             categorical=True)
        initial = color
        if color is not None and not isinstance(color, str):
            values = np.asarray(_check_len("color", color, n))
            self._add_column("custom", values, categorical=not np.issubdtype(values.dtype, np.number)
                             or values.dtype == np.bool_)
            initial = "custom"
        options = ["none", *self._columns]
        self.param.color_by.objects = options
        if initial is None:
            initial = next((c for c in ("label", "score", "component") if c in self._columns), "none")
        if initial not in options:
            raise ValueError(f"color must be one of {options} or an array of length {n}; got {initial!r}")
        self.color_by = initial
        self._scores = self._columns.get("score", {}).get("values")
        self._thumbs = _ThumbnailCache(lambda i: thumbnail_png(_item(self.images, i), self.thumbnail_size))
        self._map_range = map_range
        self._map_thumbs = _ThumbnailCache(
            lambda i: map_png(self.maps[i], self.thumbnail_size, self._get_map_range()))
        self._frame = self._make_frame()
        lo, hi = self.points.min(0), self.points.max(0)
        pad = np.where(hi > lo, (hi - lo) * 0.05, 0.5)
        self._limits = ((float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1])))
        self.selection_stream = self.bounds_stream = self.lasso_stream = None
        self._plot = self._build_plot()
        self._layout = None
        self.param.watch(self._on_selection, ["selected_index"])

    # -- data --------------------------------------------------------------------------------
    def _add_column(self, name: str, values, categorical: bool) -> None:
        values = np.asarray(values)
        col: dict[str, Any] = {"values": values, "categorical": categorical}
        if categorical:
            cats, codes = np.unique(values.astype(str) if values.dtype.kind in "OUS" else values, return_inverse=True)
            col["categories"] = [str(c) for c in cats]
            col["codes"] = codes.astype(np.int64)
            col["palette"] = _palette(len(cats))
        else:
            finite = values[np.isfinite(values)]
            col["span"] = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        self._columns[name] = col

    def _make_frame(self):
        import pandas as pd

        df = pd.DataFrame({"x": self.points[:, 0], "y": self.points[:, 1], "index": np.arange(self.n)})
        for name, col in self._columns.items():
            if col["categorical"]:
                df[name] = pd.Categorical.from_codes(col["codes"], categories=col["categories"])
            else:
                df[name] = col["values"]
        return df

    def _get_map_range(self) -> tuple[float, float]:
        if self._map_range is None:
            lo = min(float(np.nanmin(np.asarray(m))) for m in self.maps)
            hi = max(float(np.nanmax(np.asarray(m))) for m in self.maps)
            self._map_range = (lo, hi)
        return self._map_range

    # -- plot --------------------------------------------------------------------------------
    def _build_plot(self):
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401

        common = dict(width=self.width, height=self.height, tools=["box_select", "lasso_select"],
                      active_tools=["box_select", "wheel_zoom"], xlabel="", ylabel="")
        (x0, x1), (y0, y1) = self._limits
        if self.mode == "glyph":
            points = hv.DynamicMap(self._glyphs, streams=[self.param.color_by])
            points = points.opts(backend="bokeh", **common, xlim=(x0, x1), ylim=(y0, y1))
            self.selection_stream = hv.streams.Selection1D(source=points)
            self.selection_stream.add_subscriber(self._from_glyph_selection)
            highlight = hv.DynamicMap(self._glyph_highlight, streams=[self.param.selected_index])
            return points * highlight
        streams = [hv.streams.RangeXY(x_range=(x0, x1), y_range=(y0, y1)), hv.streams.PlotSize(),
                   self.param.color_by, self.param.selected_index]
        raster = hv.DynamicMap(self._raster, streams=streams)
        raster = raster.opts(backend="bokeh", **common, xlim=(x0, x1), ylim=(y0, y1))
        self.bounds_stream = hv.streams.BoundsXY(source=raster)
        self.bounds_stream.add_subscriber(self._from_bounds)
        self.lasso_stream = hv.streams.Lasso(source=raster)
        self.lasso_stream.add_subscriber(self._from_lasso)
        return raster

    def point_colors(self, color_by: str | None = None) -> np.ndarray:
        """Hex colour of every point under ``color_by`` (default: the current colouring)."""
        col = self._columns.get(self.color_by if color_by is None else color_by)
        if col is None:
            return np.full(self.n, "#1f77b4", dtype=object)
        if col["categorical"]:
            return np.asarray(col["palette"], dtype=object)[col["codes"]]
        from bokeh.palettes import Viridis256

        lo, hi = col["span"]
        t = np.clip((np.nan_to_num(col["values"], nan=lo) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        return np.asarray(Viridis256, dtype=object)[(t * 255).round().astype(np.int64)]

    def _glyphs(self, color_by):
        import holoviews as hv

        # Colours are computed here, not mapped by Bokeh: HoloViews cannot switch one glyph
        # between a categorical and a linear colour mapper (seen in the real browser).
        frame = self._frame.assign(color=self.point_colors(color_by))
        pts = hv.Points(frame, ["x", "y"], ["index", *self._columns, "color"])
        return pts.opts(backend="bokeh", color="color", size=5 if self.n > 2000 else 7, line_color=None,
                        fill_alpha=0.8, nonselection_alpha=0.2, selection_line_color=None,
                        tools=["box_select", "lasso_select", "hover"], show_legend=False)

    def _glyph_highlight(self, selected_index):
        import holoviews as hv

        idx = np.asarray(selected_index, dtype=np.int64)[:20_000]
        pts = hv.Points((self.points[idx, 0], self.points[idx, 1]), ["x", "y"])
        return pts.opts(backend="bokeh", size=9 if self.n > 2000 else 11, fill_alpha=0, line_color=HIGHLIGHT,
                        line_width=1.2, tools=[], nonselection_alpha=1, selection_alpha=1)

    def _shade(self, cvs, df, color_by, alpha: int):
        import datashader as ds
        import datashader.transfer_functions as tf

        col = self._columns.get(color_by)
        if col is None:
            agg = cvs.points(df, "x", "y", ds.count())
            img = tf.shade(agg, cmap=["#9ecae1", "#08306b"], how="eq_hist", min_alpha=alpha, alpha=alpha)
        elif col["categorical"]:
            agg = cvs.points(df, "x", "y", ds.count_cat(color_by))
            key = dict(zip(col["categories"], col["palette"]))
            img = tf.shade(agg, color_key=key, how="eq_hist", min_alpha=alpha, alpha=alpha)
        else:
            from bokeh.palettes import Viridis256

            agg = cvs.points(df, "x", "y", ds.mean(color_by))
            img = tf.shade(agg, cmap=list(Viridis256), how="linear", span=col["span"], min_alpha=alpha,
                           alpha=alpha)
        return img

    def _raster(self, x_range=None, y_range=None, width=None, height=None, scale=1.0, color_by="none",
                selected_index=None):
        import datashader as ds
        import datashader.transfer_functions as tf
        import holoviews as hv

        (x0, x1), (y0, y1) = x_range or self._limits[0], y_range or self._limits[1]
        w = max(int((width or self.width) * (scale or 1.0)), 10)
        h = max(int((height or self.height) * (scale or 1.0)), 10)
        cvs = ds.Canvas(plot_width=w, plot_height=h, x_range=(x0, x1), y_range=(y0, y1))
        img = tf.dynspread(self._shade(cvs, self._frame, color_by, alpha=255), threshold=0.5, max_px=2)
        rgba = np.asarray(img.data).view(np.uint8).reshape(h, w, 4).copy()  # row 0 = bottom
        sel = np.asarray(selected_index if selected_index is not None else [], dtype=np.int64)
        if sel.size:
            _highlight(rgba, self.points[sel], (x0, x1), (y0, y1))
        return hv.RGB(rgba[::-1], bounds=(x0, y0, x1, y1), kdims=["x", "y"], vdims=["R", "G", "B", "A"])

    # -- selection ---------------------------------------------------------------------------
    def _from_glyph_selection(self, index=None, **_):
        self.select(index if index is not None else [])

    def _from_bounds(self, bounds=None, **_):
        if bounds is None:
            return
        self.select(points_in_box(self.points, bounds))

    def _from_lasso(self, geometry=None, **_):
        if geometry is None:
            return
        self.select(points_in_polygon(self.points, geometry))

    def select(self, index) -> None:
        """Make ``index`` (any iterable of ints or a boolean mask of length n) the selection."""
        idx = np.asarray(index if index is not None else [])
        if idx.dtype == np.bool_:
            if idx.shape != (self.n,):
                raise ValueError(f"a boolean selection needs shape ({self.n},); got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = np.unique(idx.astype(np.int64).ravel())
        if idx.size and (idx[0] < 0 or idx[-1] >= self.n):
            raise IndexError(f"selection indices must be in [0, {self.n}); got {idx[0]} .. {idx[-1]}")
        self.selected_index = idx

    def _on_selection(self, event) -> None:
        value = np.asarray(event.new if event.new is not None else [])
        normal = np.unique(value.astype(np.int64).ravel())
        if value.dtype != np.int64 or value.shape != normal.shape or not np.array_equal(value, normal):
            self.selected_index = normal  # re-enters with the normalised value
            return
        if self._layout is not None:
            self._refresh_side()

    def clear_selection(self) -> None:
        self.select([])

    # -- subsets -----------------------------------------------------------------------------
    def save_subset(self, name: str, index=None) -> np.ndarray:
        """Keep the current selection (or ``index``) as ``subsets[name]`` (replacing any)."""
        name = str(name).strip()
        if not name:
            raise ValueError("a subset needs a non-empty name")
        idx = self.selected_index if index is None else np.unique(np.asarray(index, dtype=np.int64))
        self.subsets = {**self.subsets, name: np.array(idx, dtype=np.int64)}
        return self.subsets[name]

    def show_subset(self, name: str) -> None:
        """Make the saved subset ``name`` the selection."""
        try:
            self.select(self.subsets[name])
        except KeyError:
            raise KeyError(f"no subset named {name!r}; saved: {sorted(self.subsets)}") from None

    def delete_subset(self, name: str) -> None:
        self.subsets = {k: v for k, v in self.subsets.items() if k != name}

    def to_dataframe(self):
        """One row per point: ``x``, ``y``, the given columns and ``selected`` (bool)."""
        df = self._frame.drop(columns=["index"]).copy()
        sel = np.zeros(self.n, bool)
        sel[self.selected_index] = True
        df["selected"] = sel
        for name, subset in self.subsets.items():
            df[f"subset:{name}"] = np.isin(np.arange(self.n), subset)
        return df

    # -- gallery -----------------------------------------------------------------------------
    def _caption(self, i: int) -> str:
        parts = [self.names[i] if self.names is not None else f"#{i}"]
        if "label" in self._columns:
            parts.append(str(self._columns["label"]["values"][i]))
        if self._scores is not None:
            parts.append(f"{self._scores[i]:.3g}")
        return " · ".join(parts)

    def gallery_order(self) -> np.ndarray:
        """The selection in gallery order: highest score first when scores are given."""
        idx = self.selected_index
        if self._scores is not None and idx.size:
            s = self._scores[idx]
            idx = idx[np.lexsort((idx, -np.nan_to_num(s, nan=-np.inf)))]
        return idx

    def gallery_html(self) -> str:
        """HTML of the gallery of the current selection (thumbnails as data URLs)."""
        order = self.gallery_order()
        shown = order[: self.max_gallery]
        items = []
        for i in shown:
            imgs = []
            if self.images is not None:
                imgs.append(f'<img src="{self._thumbs(i)}" style="image-rendering:pixelated;display:block" '
                            f'title="{html.escape(self._caption(i))}">')
            if self.maps is not None:
                imgs.append(f'<img src="{self._map_thumbs(i)}" style="display:block">')
            if not imgs:
                imgs.append("")
            items.append(
                f'<figure class="wb-thumb" data-index="{int(i)}" style="margin:0;font:10px sans-serif;'
                f'text-align:center;max-width:{2 * self.thumbnail_size + 4}px">'
                f'<div style="display:flex;gap:2px">{"".join(imgs)}</div>'
                f"<figcaption>{html.escape(self._caption(i))}</figcaption></figure>")
        return _gallery_html(items, len(order), len(shown), "Select points with the box or lasso tool.")

    def legend_html(self) -> str:
        """HTML colour key of the current colouring (categories, or the score range)."""
        col = self._columns.get(self.color_by)
        if col is None:
            return ""
        if col["categorical"]:
            items = [f'<span style="white-space:nowrap"><span style="display:inline-block;width:10px;height:10px;'
                     f'background:{c};margin-right:3px"></span>{html.escape(k)}</span>'
                     for k, c in list(zip(col["categories"], col["palette"]))[:20]]
            more = " …" if len(col["categories"]) > 20 else ""
            return f'<div style="font:12px sans-serif;display:flex;flex-wrap:wrap;gap:8px">{"".join(items)}{more}</div>'
        lo, hi = col["span"]
        return (f'<div style="font:12px sans-serif">{html.escape(self.color_by)}: {lo:.3g} '
                f'<span style="display:inline-block;width:120px;height:10px;vertical-align:middle;'
                f'background:linear-gradient(to right,#440154,#3b528b,#21918c,#5ec962,#fde725)"></span> {hi:.3g}</div>')

    def _count_text(self) -> str:
        k = len(self.selected_index)
        return (f'<span style="font:14px sans-serif"><b>{k}</b> of {self.n} selected'
                + (" (datashader)" if self.mode == "raster" else "") + "</span>")

    def _refresh_side(self) -> None:
        self._count.object = self._count_text()
        self._gallery.object = self.gallery_html() if (self.images is not None or self.maps is not None) else \
            self._list_html()

    def _list_html(self) -> str:
        idx = self.gallery_order()[: self.max_gallery]
        if not idx.size:
            return _gallery_html([], 0, 0, "Select points with the box or lasso tool.")
        rows = "".join(f"<li>{html.escape(self._caption(i))}</li>" for i in idx)
        rest = len(self.selected_index) - len(idx)
        more = f"<li>… {rest} more</li>" if rest > 0 else ""
        return f'<ul class="wb-gallery" style="font:12px sans-serif;margin:0;padding-left:16px">{rows}{more}</ul>'

    # -- layout ------------------------------------------------------------------------------
    def __panel__(self):
        if self._layout is None:
            self._layout = self._make_layout()
        return self._layout

    def _make_layout(self):
        color = pn.widgets.Select.from_param(self.param.color_by, label="colour by", width=160)
        self._count = HTMLText(self._count_text(), css_classes=["wb-selection-count"], margin=(12, 10))
        self._gallery = HTMLText("", css_classes=["wb-gallery-pane"], width=2 * self.thumbnail_size * 3 + 60,
                                     height=self.height - 60, styles={"overflow-y": "auto"})
        self._refresh_side()
        name = pn.widgets.TextInput(placeholder="subset name", width=150)
        save = pn.widgets.Button(label="Save selection", color="primary", width=120)
        saved = pn.widgets.Select(options=sorted(self.subsets), width=150)
        show = pn.widgets.Button(label="Show", width=70)

        def on_save(_):
            if name.value.strip():
                self.save_subset(name.value)

        def on_show(_):
            if saved.value:
                self.show_subset(saved.value)

        save.on_click(on_save)
        show.on_click(on_show)
        self.param.watch(lambda e: setattr(saved, "options", sorted(e.new)), ["subsets"])
        plot = pn.pane.HoloViews(self._plot, backend="bokeh", linked_axes=False)
        side = pn.Column(pn.Row(name, save), pn.Row(saved, show), self._gallery)
        legend = HTMLText(self.legend_html(), css_classes=["wb-legend"], margin=(0, 10), width=self.width)
        self.param.watch(lambda e: setattr(legend, "object", self.legend_html()), ["color_by"])
        return pn.Row(pn.Column(pn.Row(color, self._count), legend, plot), side)
