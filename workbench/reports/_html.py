"""Executed notebook -> one self-contained HTML page (works offline, mailed or copied).

nbconvert's ``lab`` template is used with every network dependency removed: require.js,
MathJax, mermaid and the widget manager come from CDNs, so their blocks are emptied (LaTeX
in markdown then shows as source; widget views show nothing, their static outputs stay).
Images are embedded as ``data:`` URIs: markdown images by nbconvert (``embed_images``), and
``<img src="file">`` in HTML outputs by :func:`_embed_local_images`. Whatever still points
at the network or a file is reported as a warning (and recorded in ``run.json``).
"""

from __future__ import annotations

import base64
import copy
import html
import json
import logging
import mimetypes
import re
import urllib.parse
import warnings as warnings_module
from pathlib import Path
from typing import Any, Iterable

__all__ = ["render_report", "banner_html", "offline_problems", "inline_cdn_assets"]

_TEMPLATE_NAME = "workbench_report.html.j2"
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}<style type="text/css">{{ resources.workbench_css }}</style>{%- endblock html_head_css -%}
{%- block body_header -%}{{ super() }}
{{ resources.workbench_banner }}
{%- endblock body_header -%}
"""

BANNER_CSS = """
.wb-banner { font-family: var(--jp-ui-font-family, sans-serif); margin: 12px 16px 20px;
  padding: 12px 16px; border-radius: 6px; border: 1px solid #c8d1dc; background: #f4f7fa;
  color: #1b1f23; font-size: 14px; line-height: 1.45; }
.wb-banner h1 { font-size: 18px; margin: 0 0 6px; }
.wb-banner .wb-meta { color: #4a5560; }
.wb-banner table { border-collapse: collapse; margin-top: 6px; font-size: 13px; }
.wb-banner td { padding: 1px 10px 1px 0; vertical-align: top; }
.wb-banner td.wb-k { font-family: var(--jp-code-font-family, monospace); color: #4a5560; }
.wb-banner code, .wb-banner pre { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.wb-banner pre { background: rgba(0,0,0,0.05); padding: 8px; overflow-x: auto; margin: 6px 0 0; white-space: pre-wrap; }
.wb-status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: bold;
  color: #fff; background: #2e7d32; margin-right: 6px; text-transform: uppercase; font-size: 12px; }
.wb-banner.wb-failed { border-color: #c62828; background: #fdecea; }
.wb-banner.wb-failed .wb-status { background: #c62828; }
.wb-banner.wb-timeout { border-color: #ef6c00; background: #fff3e0; }
.wb-banner.wb-timeout .wb-status { background: #ef6c00; }
.wb-banner.wb-cancelled { border-color: #616161; background: #eeeeee; }
.wb-banner.wb-cancelled .wb-status { background: #616161; }
"""

_STATUS_TEXT = {
    "ok": "The notebook ran to the end.",
    "failed": "The notebook FAILED: the report below stops at the failing cell.",
    "timeout": "The run TIMED OUT and was stopped: the report below is partial.",
    "cancelled": "The run was CANCELLED and stopped: the report below is partial.",
}


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def banner_html(record: dict, *, error_anchor: bool) -> str:
    """The box at the top of ``report.html``: status, when, how long, parameters, and the error.

    Parameters
    ----------
    record : dict
        The run record (the content of ``run.json``).
    error_anchor : bool
        Link to papermill's ``#papermill-error-cell`` anchor (present when the kernel reported
        the error itself).
    """
    esc = html.escape
    status = record.get("status", "?")
    name = Path(record.get("notebook", "?")).name
    parts = [f'<div class="wb-banner wb-{esc(status)}" id="workbench-run-status" data-status="{esc(status)}">',
             f'<h1><span class="wb-status">{esc(status)}</span>{esc(name)}</h1>',
             f"<div>{esc(_STATUS_TEXT.get(status, ''))}</div>"]
    duration = record.get("duration_seconds")
    meta = [f"started {esc(str(record.get('started', '?')))}"]
    if isinstance(duration, (int, float)):
        meta.append(f"took {duration:.1f} s")
    commit = (record.get("project") or {}).get("git", {}).get("commit")
    if commit:
        meta.append(f"commit {esc(commit[:10])}")
    meta.append(f"outlier-workbench {esc(str((record.get('project') or {}).get('version', '?')))}")
    parts.append(f'<div class="wb-meta">{" &middot; ".join(meta)}</div>')
    error = record.get("error")
    if error:
        where = []
        if error.get("cell_index") is not None:
            where.append(f"cell {error['cell_index']}")
        if error.get("execution_count") is not None:
            where.append(f"In [{error['execution_count']}]")
        where_txt = f" in {esc(', '.join(where))}" if where else ""
        link = ' (<a href="#papermill-error-cell">jump to the error</a>)' if error_anchor else ""
        parts.append(f"<div><strong>{esc(str(error.get('ename', 'Error')))}</strong>{where_txt}: "
                     f"{esc(str(error.get('evalue', '')))}{link}</div>")
        if error.get("source_excerpt"):
            parts.append(f"<pre>{esc(error['source_excerpt'])}</pre>")
    params = record.get("parameters") or {}
    if params:
        rows = "".join(f'<tr><td class="wb-k">{esc(k)}</td><td><code>{esc(_short(v))}</code></td></tr>'
                       for k, v in params.items())
        parts.append(f"<table><tbody>{rows}</tbody></table>")
    else:
        parts.append('<div class="wb-meta">parameters: the notebook\'s defaults</div>')
    parts.append("</div>")
    return "\n".join(parts)


def render_report(
    nb,
    *,
    show_code: bool,
    banner: str,
    title: str,
    image_dirs: Iterable[Path],
) -> tuple[str, list[str]]:
    """Render an executed notebook to one self-contained HTML page.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook (not modified).
    show_code : bool
        Keep code cells' input; by default only outputs and markdown are shown.
    banner : str
        HTML put at the top of the page.
    title : str
        The page title.
    image_dirs : iterable of Path
        Folders relative image paths are looked up in (the notebook's folder first, as
        Jupyter does; then the run folder and the project root).

    Returns
    -------
    html : str
    warnings : list of str
        What could not be made self-contained (a network script, an image not found).
    """
    import jinja2
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    # Widget state (anywidget/ipywidgets models) cannot render in a static page (the template
    # drops the widget manager) but would still be embedded: a megabyte for one image viewer.
    nb.metadata.pop("widgets", None)
    # The page's own banner replaces papermill's red "An Exception was encountered" cell at the
    # top; its anchor before the failing cell stays, for the banner's link.
    nb.cells = [c for c in nb.cells
                if not ("papermill-error-cell-tag" in c.get("metadata", {}).get("tags", [])
                        and "An Exception was encountered" in c.source)]
    image_dirs = [Path(d) for d in image_dirs]
    exporter = HTMLExporter(
        log=_exporter_log(),
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        template_file=_TEMPLATE_NAME,
        embed_images=True,
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=not show_code,
    )
    resources = {
        "metadata": {"name": title, "path": str(image_dirs[0]) if image_dirs else ""},
        "workbench_banner": banner,
        "workbench_css": BANNER_CSS,
    }
    with warnings_module.catch_warnings():
        # outputs with no mimetype nbconvert can show (e.g. HoloViews' comm-only bundles)
        warnings_module.filterwarnings("ignore", message="Your element with mimetype", category=UserWarning)
        body, _ = exporter.from_notebook_node(nb, resources=resources)
    body, warnings = _embed_local_images(body, image_dirs)
    body = inline_cdn_assets(body)
    warnings.extend(offline_problems(body))
    return body, warnings


class _NoAltTextNoise(logging.Filter):
    """nbconvert warns about every image output without alt text; notebook outputs have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Alternative text is missing" not in record.getMessage()


def _exporter_log() -> logging.Logger:
    log = logging.getLogger("workbench.reports.html")
    if not any(isinstance(f, _NoAltTextNoise) for f in log.filters):
        log.addFilter(_NoAltTextNoise())
    return log


_IMG_RE = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def _embed_local_images(page: str, dirs: list[Path]) -> tuple[str, list[str]]:
    warnings: list[str] = []

    def replace(match: re.Match) -> str:
        src = html.unescape(match.group(3))
        low = src.strip().lower()
        if low.startswith("data:"):
            return match.group(0)
        if low.startswith(("http://", "https://", "//")):
            warnings.append(f"image loaded from the network (not embedded): {src[:200]}")
            return match.group(0)
        rel = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
        if low.startswith("file:"):
            rel = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
        for base in dirs:
            path = (base / rel) if not Path(rel).is_absolute() else Path(rel)
            if path.is_file():
                mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                return f"{match.group(1)}{match.group(2)}data:{mime};base64,{data}{match.group(2)}"
        warnings.append(f"image file not found, not embedded: {src[:200]}")
        return match.group(0)

    return _IMG_RE.sub(replace, page), warnings


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (panel takes seconds)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# CDN URLs of BokehJS and Panel that notebook outputs load (HoloViews/Panel without
# ``inline=True``, Bokeh with CDN resources) -> the same file in the installed package.
_CDN_PATTERNS = (
    ("panel", re.compile(r"https?://cdn\.holoviz\.org/panel/(?P<ver>[^/\"']+)/dist/"
                         r"(?P<path>[^\"'\s?#<>]+)(?P<query>\?[^\"'\s#<>]*)?")),
    ("bokeh", re.compile(r"https?://cdn\.bokeh\.org/bokeh/(?:release|dev)/"
                         r"(?P<path>bokeh(?:-[a-z]+)?)-(?P<ver>\d[\w.+-]*?)(?P<min>\.min)?\.js")),
    # Bokeh's INLINE resources still name some Panel extension files (e.g. the ES module
    # shims of ReactiveESM/anywidget-based components, once imported) by their Bokeh-server
    # path, which from a file on disk resolves to nothing: the installed copy, too.
    ("panel-server", re.compile(r"""(?<=["'])/?static/extensions/panel/(?P<path>[^"'\s?#<>]+)""")),
)


def _local_asset(package: str, match: re.Match) -> Path | None:
    server = package == "panel-server"  # written by this very installation: no version in the URL
    package = "panel" if server else package
    root = _package_dir(package)
    if root is None or (not server and match.group("ver") != _version(package)):
        return None  # another version's JavaScript would not match the Python side
    if package == "panel":
        rel = urllib.parse.unquote(match.group("path"))
        path = (root / "dist" / rel).resolve()
        if root.resolve() not in path.parents:
            return None
    else:
        path = root / "server" / "static" / "js" / f"{match.group('path')}{match.group('min') or ''}.js"
    return path if path.is_file() else None


def inline_cdn_assets(page: str) -> str:
    """Replace BokehJS/Panel CDN URLs by ``data:`` URIs of the installed package's own files.

    HoloViews' ``hv.extension("bokeh")`` (without ``inline=True``) makes notebook outputs
    load BokehJS and Panel from cdn.bokeh.org / cdn.holoviz.org; inlining the same version
    from the installed packages makes those plots work offline. Other URLs are left alone.
    """
    cache: dict[str, str | None] = {}

    for package, pattern in _CDN_PATTERNS:
        def replace(match: re.Match, package=package) -> str:
            url = match.group(0)
            if url not in cache:
                path = _local_asset(package, match)
                if path is None:
                    cache[url] = None
                else:
                    mime = "text/css" if path.suffix == ".css" else "text/javascript"
                    data = base64.b64encode(path.read_bytes()).decode("ascii")
                    cache[url] = f"data:{mime};base64,{data}"
            return cache[url] or url

        page = pattern.sub(replace, page)
    return page


_NETWORK_RES = (
    re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE),
    re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE),
    re.compile(r"""@import\s+(?:url\()?["']?((?:https?:)?//[^"')\s]+)""", re.IGNORECASE),
    # Loaders in notebook outputs that add script/link elements from JavaScript (BokehJS and
    # Panel from HoloViews, plotly, require.js). Other URLs inside inlined libraries are not
    # counted (BokehJS names a MathJax URL it loads only for LaTeX inside plots).
    re.compile(r"""["']((?:https?:)?//(?:cdn\.bokeh\.org|cdn\.holoviz\.org|cdn\.plot\.ly|unpkg\.com|"""
               r"""cdnjs\.cloudflare\.com)/[^"'\s<>]*?\.(?:m?js|css)(?:\?[^"'\s<>]*)?)["']""", re.IGNORECASE),
)


#: a Bokeh-server path: nothing serves it when the page is opened from disk or mailed
_SERVER_RES = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?(/?static/extensions/[^"'\s>]+)""", re.IGNORECASE)


def offline_problems(page: str) -> list[str]:
    """Scripts and stylesheets a page would load from the network or from a Bokeh server
    (empty when self-contained)."""
    found: dict[str, None] = {}
    for pattern in _NETWORK_RES:
        for m in pattern.finditer(page):
            found.setdefault(f"loads from the network (fails offline): {m.group(1)[:200]}")
    for m in _SERVER_RES.finditer(page):
        found.setdefault(f"loads from a Bokeh server path (fails from disk): {m.group(1)[:200]}")
    return list(found)
