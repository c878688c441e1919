"""``DIR/index.html``: every run of every notebook, and each numeric metric's trend.

The page is self-contained: plots are Bokeh with BokehJS inlined (no CDN), styles are
inline, links are relative (the reports folder can be copied or served as is). Broken run
folders (no or corrupt ``run.json``, missing ``report.html``, runs still in progress or
killed) are listed as such; nothing in a run folder can make this fail.
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import math
import os
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from workbench._io import atomic_write
from workbench.errors import WorkbenchError
from workbench.reports._run import _PARTIAL_SUFFIX, LATEST, STATUSES, _share

__all__ = ["write_index", "collect_runs"]

log = logging.getLogger("workbench.reports")

_STAMP = re.compile(r"^(\d{8}T\d{6}Z)")
_COLORS = {"ok": "#2e7d32", "failed": "#c62828", "timeout": "#ef6c00", "cancelled": "#616161",
           "broken": "#6a1b9a", "incomplete": "#9e9e9e"}


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        ts = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=datetime.timezone.utc)


def _time_from_name(name: str) -> datetime.datetime | None:
    m = _STAMP.match(name.lstrip("."))
    if not m:
        return None
    try:
        return datetime.datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _flatten_numbers(obj: Any, prefix: str = "", depth: int = 0, out: dict | None = None) -> dict[str, float]:
    """Numeric scalars of a metrics dict, nested keys joined by dots (two levels deep)."""
    out = {} if out is None else out
    if not isinstance(obj, dict):
        return out
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                out[name] = float(value)
        elif isinstance(value, dict) and depth < 1:
            _flatten_numbers(value, name + ".", depth + 1, out)
    return out


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({type(exc).__name__})"


def _read_run(folder: Path, stem: str) -> dict:
    run: dict[str, Any] = {
        "name": folder.name, "notebook": stem, "status": "broken", "problems": [],
        "started": None, "duration": None, "parameters": {}, "metrics": {}, "files": {},
        "error": None,
    }
    if folder.name.endswith(_PARTIAL_SUFFIX):
        run["status"] = "incomplete"
        run["problems"].append("still running, or stopped before it finished (killed)")
        run["started"] = _time_from_name(folder.name)
        return run
    record, problem = _read_json(folder / "run.json")
    if problem:
        run["problems"].append(f"run.json {problem}")
        record = None
    elif not isinstance(record, dict):
        run["problems"].append("run.json does not hold an object")
        record = None
    if record is not None:
        status = record.get("status")
        if status in STATUSES:
            run["status"] = status
        else:
            run["problems"].append(f"unknown status {str(status)[:40]!r}")
        run["started"] = _parse_time(record.get("started"))
        duration = record.get("duration_seconds")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            run["duration"] = float(duration)
        params = record.get("parameters")
        if isinstance(params, dict):
            run["parameters"] = params
        error = record.get("error")
        if isinstance(error, dict):
            run["error"] = error
    if run["started"] is None:
        run["started"] = _time_from_name(folder.name)
    files = record.get("files") if isinstance(record, dict) else None
    files = files if isinstance(files, dict) else {}
    report = folder / "report.html"
    if report.is_file():
        run["files"]["report"] = "report.html"
    else:
        run["problems"].append("report.html missing")
    nb_name = files.get("notebook")
    if isinstance(nb_name, str) and "/" not in nb_name and (folder / nb_name).is_file():
        run["files"]["notebook"] = nb_name
    if (folder / "run.json").is_file():
        run["files"]["run.json"] = "run.json"
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        metrics, problem = _read_json(metrics_path)
        if problem:
            run["problems"].append(f"metrics.json {problem}")
        else:
            run["metrics"] = _flatten_numbers(metrics)
            run["files"]["metrics"] = "metrics.json"
    return run


def _looks_like_notebook_folder(folder: Path, entries: list[os.DirEntry]) -> bool:
    for e in entries:
        if e.name == LATEST or e.name.endswith(_PARTIAL_SUFFIX):
            return True
        if e.is_dir() and (_STAMP.match(e.name) or (Path(e.path) / "run.json").exists()):
            return True
    return False


def collect_runs(reports_dir: str | os.PathLike) -> dict[str, dict]:
    """Read every run folder under ``reports_dir``.

    Returns
    -------
    dict
        ``{notebook stem: {"runs": [run, ...] newest first, "latest": name or None}}``; each
        run is a dict with ``name``, ``status`` (a run status, ``"broken"`` or
        ``"incomplete"``), ``started``, ``duration``, ``parameters``, ``metrics`` (numeric,
        flattened), ``files`` (those present) and ``problems`` (what is wrong with the folder).
    """
    root = Path(reports_dir)
    notebooks: dict[str, dict] = {}
    try:
        top = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        raise WorkbenchError(f"reports folder not found: {root}") from None
    except NotADirectoryError:
        raise WorkbenchError(f"not a folder: {root}") from None
    for entry in top:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            entries = sorted(os.scandir(entry.path), key=lambda e: e.name)
        except OSError:
            continue
        if not _looks_like_notebook_folder(Path(entry.path), entries):
            continue
        runs, latest = [], None
        for e in entries:
            if e.name == LATEST:
                target = Path(e.path)
                if (target / "report.html").is_file():
                    latest = os.readlink(e.path) if e.is_symlink() else LATEST
                continue
            if e.name.startswith(".") and not e.name.endswith(_PARTIAL_SUFFIX):
                continue  # temporary files of an update in progress
            try:
                if not e.is_dir():
                    continue
            except OSError:
                continue
            try:
                runs.append(_read_run(Path(e.path), entry.name))
            except Exception as exc:  # noqa: BLE001 - never let one folder break the page
                runs.append({"name": e.name, "notebook": entry.name, "status": "broken",
                             "problems": [f"unreadable: {type(exc).__name__}: {exc}"], "started": None,
                             "duration": None, "parameters": {}, "metrics": {}, "files": {},
                             "error": None})
        epoch = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
        runs.sort(key=lambda r: (r["started"] or epoch, r["name"]), reverse=True)
        notebooks[entry.name] = {"runs": runs, "latest": latest}
    return notebooks


# -- rendering -------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 24px;
  color: #1b1f23; font-size: 14px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 6px; }
.meta { color: #57606a; }
table.runs { border-collapse: collapse; margin-top: 10px; width: 100%; }
table.runs th, table.runs td { border-bottom: 1px solid #e1e4e8; padding: 4px 8px; text-align: left;
  vertical-align: top; font-size: 13px; }
table.runs th { background: #f6f8fa; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.params, td.metrics { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
  font-weight: bold; text-transform: uppercase; }
.problem { color: #6a1b9a; font-size: 12px; }
.err { color: #c62828; font-size: 12px; }
.trend { margin: 8px 0; }
nav a { margin-right: 12px; }
"""


def _fmt_num(x: float) -> str:
    return f"{x:.4g}"


def _fmt_value(v: Any, limit: int = 60) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _metric_names(runs: list[dict], limit: int) -> tuple[list[str], int]:
    counts: dict[str, int] = {}
    for run in reversed(runs):  # oldest first: first-appearance order
        for k in run["metrics"]:
            counts[k] = counts.get(k, 0) + 1
    names = list(counts)
    return names[:limit], max(0, len(names) - limit)


def _trend_plots(stem: str, runs: list[dict], names: list[str]):
    from bokeh.layouts import gridplot
    from bokeh.models import ColumnDataSource, HoverTool, OpenURL, TapTool
    from bokeh.plotting import figure

    figures = []
    ordered = [r for r in reversed(runs) if r["started"] is not None and r["metrics"]]
    for name in names:
        pts = [r for r in ordered if name in r["metrics"]]
        if not pts:
            continue
        data = {
            "t": [r["started"].replace(tzinfo=None) for r in pts],
            "y": [r["metrics"][name] for r in pts],
            "run": [r["name"] for r in pts],
            "status": [r["status"] for r in pts],
            "color": [_COLORS.get(r["status"], "#333") for r in pts],
            "url": [_run_url(stem, r, "report") or "" for r in pts],
            "params": [_fmt_value(r["parameters"], 80) if r["parameters"] else "defaults" for r in pts],
        }
        source = ColumnDataSource(data)
        fig = figure(title=name, x_axis_type="datetime", width=380, height=220,
                     tools="pan,box_zoom,wheel_zoom,reset,save", toolbar_location="above")
        fig.line("t", "y", source=source, line_color="#90a4ae", line_width=1.5)
        renderer = fig.scatter("t", "y", source=source, size=7, color="color", line_color="white")
        fig.add_tools(HoverTool(renderers=[renderer], tooltips=[
            ("run", "@run"), ("status", "@status"), (name, "@y{0.[0000]}"),
            ("when", "@t{%F %T}"), ("parameters", "@params")], formatters={"@t": "datetime"}))
        fig.add_tools(TapTool(renderers=[renderer], callback=OpenURL(url="@url", same_tab=True)))
        fig.title.text_font_size = "12px"
        fig.xaxis.major_label_orientation = 0.6
        figures.append(fig)
    if not figures:
        return None
    return gridplot(figures, ncols=3, merge_tools=True, toolbar_location="right")


def _run_url(stem: str, run: dict, key: str) -> str | None:
    name = run["files"].get(key)
    if not name:
        return None
    return urllib.parse.quote(f"{stem}/{run['name']}/{name}")


def _row(stem: str, run: dict, metric_names: list[str]) -> str:
    esc = html.escape
    status = run["status"]
    badge = (f'<span class="badge" style="background:{_COLORS.get(status, "#333")}">'
             f"{esc(status)}</span>")
    started = run["started"].strftime("%Y-%m-%d %H:%M:%S") if run["started"] else "?"
    duration = f"{run['duration']:.1f} s" if run["duration"] is not None else ""
    params = "<br>".join(f"{esc(str(k))}={esc(_fmt_value(v))}" for k, v in run["parameters"].items())
    shown = [k for k in metric_names if k in run["metrics"]][:4]
    metrics = "<br>".join(f"{esc(k)}={_fmt_num(run['metrics'][k])}" for k in shown)
    links = []
    for key, label in (("report", "report"), ("notebook", "notebook"), ("metrics", "metrics"),
                       ("run.json", "run.json")):
        url = _run_url(stem, run, key)
        if url:
            links.append(f'<a href="{esc(url)}">{label}</a>')
    notes = []
    if run.get("error"):
        err = run["error"]
        notes.append(f'<div class="err">{esc(str(err.get("ename", "")))}: '
                     f'{esc(_fmt_value(str(err.get("evalue", "")), 160))}</div>')
    notes.extend(f'<div class="problem">{esc(p)}</div>' for p in run["problems"])
    return (f'<tr data-status="{esc(status)}"><td>{badge}</td><td class="num">{esc(started)}</td>'
            f'<td class="num">{esc(duration)}</td><td class="params">{params or "<i>defaults</i>"}</td>'
            f'<td class="metrics">{metrics}</td><td>{" ".join(links)}{"".join(notes)}'
            f'<div class="meta">{esc(run["name"])}</div></td></tr>')


def write_index(reports_dir: str | os.PathLike, *, max_metrics: int = 12) -> Path:
    """Write ``reports_dir/index.html`` listing every run of every notebook.

    Parameters
    ----------
    reports_dir : str or path
        The folder ``workbench report run --out`` wrote to.
    max_metrics : int
        At most this many numeric metrics are plotted per notebook (the rest are counted).

    Returns
    -------
    Path
        The index page. It shows, per notebook: a link to ``latest``, the trend of each
        numeric metric across runs (Bokeh, inlined: works offline; click a point to open that
        run's report), and a table of runs (status, start time in UTC, duration, parameters,
        headline metrics, links). Broken folders are listed with what is wrong.

    Raises
    ------
    WorkbenchError
        ``reports_dir`` does not exist or is not a folder.
    """
    root = Path(reports_dir).expanduser().absolute()
    notebooks = collect_runs(root)
    esc = html.escape
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    sections, plots = [], {}
    token = f"@@plot-{uuid.uuid4().hex}@@"
    n_runs = sum(len(nb["runs"]) for nb in notebooks.values())
    for stem, nb in notebooks.items():
        runs = nb["runs"]
        names, more = _metric_names(runs, max_metrics)
        plot = _trend_plots(stem, runs, names) if names else None
        anchor = "nb-" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)
        counts = {}
        for r in runs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        latest = (f' &middot; <a href="{esc(urllib.parse.quote(f"{stem}/{LATEST}/report.html"))}">'
                  "latest successful report</a>") if nb["latest"] else ""
        parts = [f'<h2 id="{anchor}">{esc(stem)}</h2>',
                 f'<div class="meta">{len(runs)} run{"" if len(runs) == 1 else "s"} '
                 f'({esc(summary) or "none"}){latest}</div>']
        if plot is not None:
            plots[anchor] = plot
            parts.append(f'<div class="trend">{token}{anchor}{token}</div>')
            if more:
                parts.append(f'<div class="meta">{more} more metrics not plotted</div>')
        rows = "\n".join(_row(stem, r, names) for r in runs)
        parts.append('<table class="runs"><thead><tr><th>status</th><th>started (UTC)</th>'
                     "<th>duration</th><th>parameters</th><th>metrics</th><th>files</th></tr></thead>"
                     f"<tbody>\n{rows}\n</tbody></table>")
        sections.append("\n".join(parts))

    head_js = ""
    body = "\n".join(sections) if sections else "<p>No runs yet.</p>"
    if plots:
        from bokeh.embed import components
        from bokeh.embed.bundle import bundle_for_objs_and_resources
        from bokeh.resources import INLINE

        script, divs = components(plots)
        from workbench.reports._html import inline_cdn_assets

        # INLINE still names some Panel extension files by a Bokeh-server path once Panel's
        # ESM components are imported in this process: inline those too (works from disk)
        head_js = inline_cdn_assets("".join(bundle_for_objs_and_resources(list(plots.values()), INLINE)))
        for anchor, div in divs.items():
            body = body.replace(f"{token}{anchor}{token}", div)
        body += "\n" + script
    nav = " ".join(f'<a href="#nb-{esc(re.sub(r"[^A-Za-z0-9_-]", "-", s))}">{esc(s)}</a>' for s in notebooks)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reports: {esc(root.name)}</title>
<style>{_CSS}</style>
{head_js}
</head>
<body>
<h1>Reports</h1>
<div class="meta">{len(notebooks)} notebooks, {n_runs} runs in {esc(str(root))} &middot; generated {now}</div>
<nav>{nav}</nav>
{body}
</body>
</html>
"""
    out = root / "index.html"
    with atomic_write(out, "w") as fh:
        fh.write(page)
    _share(out)
    log.info("wrote %s (%d notebooks, %d runs)", out, len(notebooks), n_runs)
    return out
