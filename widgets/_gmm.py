"""GMMInspector: look inside a Gaussian mixture fitted to an embedding or a feature table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import panel as pn
import param

from widgets._embedding import (
    HTMLText,
    _as_display_uint8,
    _data_url,
    _item,
    _palette,
    _resize,
    _ThumbnailCache,
    _View,
    thumbnail_png,
)
from workbench.errors import DataError

__all__ = ["GMMInspector"]

_MAX_SCATTER = 20_000


def _is_mixture(obj) -> bool:
    return hasattr(obj, "means_") and hasattr(obj, "score_samples") and hasattr(obj, "predict_proba")


class GMMInspector(_View, pn.viewable.Viewer):
    """BIC/AIC, components, ellipses and a log-likelihood threshold of a Gaussian mixture.

    Parameters
    ----------
    gmm_or_X : GaussianMixture, GMMDetector or array-like of shape (n, d)
        A fitted ``sklearn.mixture.GaussianMixture`` (then pass the rows it describes as
        ``X``); a fitted ``workbench.detectors.GMMDetector`` (its mixture ``gmm_`` lives on
        standardised features: ``X`` is standardised with its ``location_`` and ``scale_``);
        or the rows themselves: mixtures with each count of ``n_components`` are then fitted
        (:func:`workbench.embedding.fit_gmms`) and the one with the lowest BIC is inspected.
    X : array-like of shape (n, d), optional
        The rows (required with a fitted mixture).
    points_2d : array-like of shape (n, 2), optional
        Where to draw the rows. Default: ``X`` itself when ``d == 2``, else its 2-D PCA.
        Ellipses are exact when the mixture lives in the plane drawn; otherwise each
        component is drawn as the Gaussian moment-matched to the projected points weighted by
        its responsibilities (see :func:`workbench.embedding.component_ellipses`).
    images : sequence of length n, optional
        Paths, arrays or dataset samples: the component panel shows a mean thumbnail and the
        most typical members.
    n_components : int or sequence of int, default range(1, 9)
        Component counts tried when fitting.
    covariance_type : str, default "full"
    random_state : int, default 0
    threshold : float, optional
        Initial log-likelihood threshold; rows with ``loglik < threshold`` are flagged.
        Default: the ``contamination`` quantile of the log-likelihoods.
    contamination : float, default 0.05
    n_std : float, default 2.0
        Ellipse radius in standard deviations.
    width, height : int
        Size of the scatter plot in pixels.
    thumbnail_size : int, default 64
    max_gallery : int, default 12
        Thumbnails shown per gallery (typical members, least likely flagged rows).

    Attributes
    ----------
    gmm : sklearn.mixture.GaussianMixture
        The inspected mixture.
    sweep : workbench.embedding.GMMSweep or None
        The fitted sweep (None when a fitted mixture was given).
    loglik : numpy.ndarray
        ``gmm.score_samples(X)``, float64 ``(n,)`` (higher = more typical).
    components : numpy.ndarray
        ``gmm.predict(X)``, int64 ``(n,)``.
    threshold : float
        The movable threshold (a ``param``; the slider edits it).
    flagged_index : numpy.ndarray
        Sorted int64 indices with ``loglik < threshold`` (a ``param``, updated with the threshold).
    component : int
        The component shown in the component panel (a ``param``).
    """

    threshold = param.Number(default=0.0, doc="Rows with loglik < threshold are flagged.")
    flagged_index = param.Array(default=np.zeros(0, np.int64), doc="Sorted indices with loglik < threshold.")
    component = param.Integer(default=0, bounds=(0, None), doc="Component shown in the component panel.")

    def __init__(self, gmm_or_X, X=None, *, points_2d=None, images=None,
                 n_components: Sequence[int] | int = range(1, 9),
                 covariance_type: str = "full", random_state: int | None = 0, threshold: float | None = None,
                 contamination: float = 0.05, n_std: float = 2.0, width: int = 460, height: int = 380,
                 thumbnail_size: int = 64, max_gallery: int = 12, **params):
        super().__init__(**params)
        from workbench.embedding import component_ellipses, fit_gmms

        if hasattr(gmm_or_X, "gmm_") and hasattr(gmm_or_X, "location_") and hasattr(gmm_or_X, "scale_"):
            if X is None:
                raise ValueError("GMMInspector: a fitted GMMDetector needs X, the rows it describes")
            det = gmm_or_X
            gmm_or_X, X = det.gmm_, (np.asarray(X, dtype=np.float64) - det.location_) / det.scale_
        if _is_mixture(gmm_or_X):
            if X is None:
                raise ValueError("GMMInspector: a fitted mixture needs X, the rows it describes")
            self.gmm, self.sweep = gmm_or_X, None
            X = np.asarray(X, dtype=np.float64)
        else:
            if X is not None:
                raise ValueError("GMMInspector: give either a fitted mixture and X, or X alone")
            X = np.asarray(gmm_or_X, dtype=np.float64)
            self.sweep = fit_gmms(X, n_components, covariance_type=covariance_type, random_state=random_state)
            self.gmm = self.sweep.best
        if X.ndim != 2 or X.shape[1] != self.gmm.means_.shape[1]:
            raise DataError(f"GMMInspector: X must be (n, {self.gmm.means_.shape[1]}) for this mixture; "
                            f"found shape {X.shape}")
        self.X = X
        n = self.n = len(X)
        self.loglik = self.gmm.score_samples(X).astype(np.float64)
        self.components = self.gmm.predict(X).astype(np.int64)
        self.n_components_ = int(self.gmm.means_.shape[0])
        if points_2d is None:
            if X.shape[1] == 2:
                points_2d = X
            else:
                from workbench.embedding import project

                points_2d = project(X, "pca", cache=False)
        P = np.asarray(points_2d, dtype=np.float64)
        if P.shape != (n, 2):
            raise DataError(f"GMMInspector: points_2d must be ({n}, 2); found {P.shape}")
        self.points = P
        exact = X.shape[1] == 2 and np.array_equal(P, X)
        self.ellipses = component_ellipses(self.gmm, None if exact else P, None if exact else X, n_std=n_std)
        if images is not None and len(images) != n:
            raise DataError(f"GMMInspector: images has {len(images)} entries; expected {n}")
        self.images = images
        self.width, self.height = int(width), int(height)
        self.thumbnail_size, self.max_gallery = int(thumbnail_size), int(max_gallery)
        self.palette = _palette(self.n_components_)
        self.param.component.bounds = (0, self.n_components_ - 1)
        lo, hi = float(self.loglik.min()), float(self.loglik.max())
        self._range = (lo, hi)
        if threshold is None:
            threshold = float(np.quantile(self.loglik, contamination))
        self._mean_thumbs: dict[int, str] = {}
        self._thumbs = _ThumbnailCache(lambda i: thumbnail_png(_load(self.images, i), self.thumbnail_size))
        self.param.watch(self._on_threshold, ["threshold"])
        self.param.watch(self._on_component, ["component"])
        self._layout = None
        self.threshold = float(threshold)
        self._on_threshold(None)
        rng = np.random.default_rng(0)
        self._background = np.sort(rng.choice(n, _MAX_SCATTER, replace=False)) if n > _MAX_SCATTER else np.arange(n)

    # -- state -------------------------------------------------------------------------------
    def _on_threshold(self, _event) -> None:
        self.flagged_index = np.flatnonzero(self.loglik < self.threshold).astype(np.int64)
        if self._layout is not None:
            self._flag_text.object = self._flag_message()
            self._flagged_pane.object = self.flagged_html()
            self._table.object = self._table_html()

    def _on_component(self, _event) -> None:
        if self._layout is not None:
            self._component_pane.object = self.component_html(self.component)

    def component_table(self):
        """Per component: ``weight`` (mixing proportion), ``size`` (rows assigned to it),
        ``mean_loglik`` and ``flagged`` (its rows below the threshold), as a DataFrame."""
        import pandas as pd

        k = self.n_components_
        size = np.bincount(self.components, minlength=k)
        flagged = np.bincount(self.components[self.flagged_index], minlength=k)
        mean_ll = np.array([self.loglik[self.components == j].mean() if size[j] else np.nan for j in range(k)])
        return pd.DataFrame({"component": np.arange(k), "weight": self.gmm.weights_, "size": size,
                             "mean_loglik": mean_ll, "flagged": flagged})

    def members(self, component: int) -> np.ndarray:
        """Rows assigned to ``component``, most probable first."""
        idx = np.flatnonzero(self.components == component)
        prob = self.gmm.predict_proba(self.X[idx])[:, component] if idx.size else np.zeros(0)
        return idx[np.lexsort((idx, -prob))]

    def mean_thumbnail(self, component: int) -> str | None:
        """Data URL of the pixel mean of the component's member images (each resized to the
        thumbnail size first); None without images or members."""
        if self.images is None:
            return None
        if component not in self._mean_thumbs:
            idx = self.members(component)[:200]
            if idx.size == 0:
                return None
            acc = None
            for i in idx:
                a = np.asarray(_resize(_as_display_uint8(_load(self.images, i)), self.thumbnail_size)
                               .convert("RGB").resize((self.thumbnail_size, self.thumbnail_size)), np.float64)
                acc = a if acc is None else acc + a
            mean = (acc / len(idx)).round().astype(np.uint8)
            self._mean_thumbs[component] = _data_url(thumbnail_png(mean, self.thumbnail_size))
        return self._mean_thumbs[component]

    def component_html(self, component: int) -> str:
        """HTML of the component panel: weight, size, mean thumbnail and typical members."""
        t = self.component_table().iloc[component]
        head = (f'<div style="font:13px sans-serif"><b style="color:{self.palette[component]}">component '
                f'{component}</b>: weight {t.weight:.3f}, {int(t["size"])} rows, '
                f'mean log-likelihood {t.mean_loglik:.3g}, {int(t.flagged)} flagged</div>')
        if self.images is None:
            return head
        mean = self.mean_thumbnail(component)
        parts = []
        if mean:
            parts.append(f'<figure style="margin:0;font:10px sans-serif;text-align:center">'
                         f'<img src="{mean}" style="image-rendering:pixelated;outline:2px solid '
                         f'{self.palette[component]}"><figcaption>mean</figcaption></figure>')
        for i in self.members(component)[: self.max_gallery]:
            url = self._thumbs(i)
            parts.append(f'<figure style="margin:0;font:10px sans-serif;text-align:center">'
                         f'<img src="{url}" style="image-rendering:pixelated"><figcaption>#{int(i)}</figcaption>'
                         f"</figure>")
        return head + f'<div style="display:flex;flex-wrap:wrap;gap:6px">{"".join(parts)}</div>'

    def flagged_html(self) -> str:
        """HTML of the least likely flagged rows (lowest log-likelihood first): thumbnails when
        images are given, else row numbers."""
        idx = self.flagged_index[np.argsort(self.loglik[self.flagged_index], kind="stable")][: self.max_gallery]
        if idx.size == 0:
            return '<div style="font:12px sans-serif;color:#666">no row below the threshold</div>'
        if self.images is None:
            rows = ", ".join(f"#{int(i)} ({self.loglik[i]:.3g})" for i in idx)
            more = " …" if len(self.flagged_index) > len(idx) else ""
            return f'<div style="font:12px sans-serif">least likely: {rows}{more}</div>'
        parts = [f'<figure style="margin:0;font:10px sans-serif;text-align:center"><img src="{self._thumbs(i)}" '
                 f'style="image-rendering:pixelated;outline:2px solid red"><figcaption>#{int(i)} '
                 f"{self.loglik[i]:.3g}</figcaption></figure>" for i in idx]
        return f'<div style="display:flex;flex-wrap:wrap;gap:6px">{"".join(parts)}</div>'

    def _table_html(self) -> str:
        table = self.component_table()
        table["weight"] = table["weight"].map("{:.3f}".format)
        table["mean_loglik"] = table["mean_loglik"].map("{:.3g}".format)
        return table.to_html(index=False, border=0).replace(
            "<table", '<table style="font:12px sans-serif;border-collapse:collapse" cellpadding="3"', 1)

    def _flag_message(self) -> str:
        k = len(self.flagged_index)
        return (f'<span style="font:14px sans-serif"><b>{k}</b> of {self.n} rows have log-likelihood '
                f"&lt; {self.threshold:.4g}</span>")

    # -- plots -------------------------------------------------------------------------------
    def criteria_plot(self):
        """BIC and AIC against the number of components (lower = better); the inspected count marked."""
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401

        if self.sweep is not None:
            ks, bic, aic = self.sweep.n_components, self.sweep.bic, self.sweep.aic
        else:
            ks = np.array([self.n_components_])
            bic, aic = np.array([self.gmm.bic(self.X)]), np.array([self.gmm.aic(self.X)])
        kd, vd = hv.Dimension("k", label="components"), hv.Dimension("criterion", label="information criterion")
        curves = (hv.Curve((ks, bic), kd, vd, label="BIC") * hv.Scatter((ks, bic), kd, vd, label="BIC")
                  * hv.Curve((ks, aic), kd, vd, label="AIC") * hv.Scatter((ks, aic), kd, vd, label="AIC"))
        j = int(np.flatnonzero(ks == self.n_components_)[0])
        chosen = hv.Scatter(([ks[j]], [bic[j]]), kd, vd).opts(backend="bokeh", size=14, fill_alpha=0,
                                                              line_color="black", line_width=2)
        return (curves * chosen).opts(backend="bokeh", width=self.width, height=220, legend_position="right",
                                      title="model selection", show_grid=True)

    def scatter_plot(self):
        """Rows on ``points_2d`` coloured by component, ellipses, flagged rows marked."""
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401

        bg = self._background
        cats = [str(c) for c in self.components[bg]]
        pts = hv.Points((self.points[bg, 0], self.points[bg, 1], cats), ["x", "y"], ["component"]).opts(
            backend="bokeh", color="component", cmap={str(j): c for j, c in enumerate(self.palette)}, size=4,
            line_color=None, fill_alpha=0.6, show_legend=False)
        paths = hv.Path([{"x": e[:, 0], "y": e[:, 1], "component": str(j)} for j, e in enumerate(self.ellipses)
                         if np.isfinite(e).all()], vdims=["component"]).opts(
            backend="bokeh", color="component", cmap={str(j): c for j, c in enumerate(self.palette)}, line_width=2)

        def flagged(threshold):
            idx = np.flatnonzero(self.loglik < threshold)[:_MAX_SCATTER]
            return hv.Points((self.points[idx, 0], self.points[idx, 1]), ["x", "y"]).opts(
                backend="bokeh", marker="x", color="red", size=8, line_width=1.5)

        marks = hv.DynamicMap(flagged, streams=[self.param.threshold])
        return (pts * paths * marks).opts(backend="bokeh", width=self.width, height=self.height, xlabel="",
                                          ylabel="", title=f"{self.n_components_} components, 2-sigma ellipses")

    def histogram_plot(self):
        """Histogram of the log-likelihoods with the threshold as a vertical line."""
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401

        counts, edges = np.histogram(self.loglik, bins=min(60, max(10, self.n // 20)))
        kdim = hv.Dimension("loglik", label="log-likelihood")
        hist = hv.Histogram((edges, counts), kdims=[kdim], vdims=["count"]).opts(
            backend="bokeh", color="#9ecae1", line_color=None)
        line = hv.DynamicMap(lambda threshold: hv.VLine(threshold).opts(backend="bokeh", color="red", line_width=2),
                             streams=[self.param.threshold])
        return (hist * line).opts(backend="bokeh", width=self.width, height=220, title="log-likelihood")

    # -- layout ------------------------------------------------------------------------------
    def __panel__(self):
        if self._layout is None:
            self._layout = self._make_layout()
        return self._layout

    def _make_layout(self):
        lo, hi = self._range
        step = (hi - lo) / 500 if hi > lo else 0.01
        slider = pn.widgets.FloatSlider.from_param(self.param.threshold, start=lo - step, end=hi + step, step=step,
                                                   label="log-likelihood threshold", width=self.width)
        self._flag_text = HTMLText(self._flag_message(), css_classes=["wb-flag-count"])
        self._flagged_pane = HTMLText(self.flagged_html(), width=self.width, css_classes=["wb-flagged"])
        choose = pn.widgets.Select(label="component", options={f"component {j}": j for j in range(self.n_components_)},
                                   value=self.component, width=160)
        choose.link(self, value="component")
        self._component_pane = HTMLText(self.component_html(self.component), width=self.width,
                                        css_classes=["wb-component"])
        self._table = HTMLText(self._table_html(), width=self.width, css_classes=["wb-component-table"])
        left = pn.Column(pn.pane.HoloViews(self.scatter_plot(), backend="bokeh", linked_axes=False), self._table)
        right = pn.Column(pn.pane.HoloViews(self.criteria_plot(), backend="bokeh", linked_axes=False),
                          pn.pane.HoloViews(self.histogram_plot(), backend="bokeh", linked_axes=False),
                          slider, self._flag_text, self._flagged_pane, choose, self._component_pane)
        return pn.Row(left, right)


def _load(images, i: int):
    item = _item(images, i)
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        from workbench.datasets import read_image

        return read_image(item)
    return item
