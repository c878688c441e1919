"""Regenerate the tiny fixture notebooks of the report tests: ``python tests/notebooks/make_fixtures.py``.

Each has ``kernelspec`` python3 metadata and (except ``no_params``) a first code cell tagged
``parameters``. They import nothing heavy, so a run costs about one kernel start.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# A 2x2 red PNG, so the report has an image output without importing matplotlib.
RED_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGO8IyfHwMDAxMDAwMDAAAAO"
           "CAEc48H7QgAAAABJRU5ErkJggg==")


def params_cell(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def notebook(*cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


FIXTURES = {
    "report_demo": notebook(
        new_markdown_cell("# Report demo\n\nA fixture for the report tests: one parameter of each "
                          "type, a markdown image ![pixel](pixel.png), an image output and a metrics file."),
        params_cell(
            'data_dir = "data/sample"  # dataset folder, relative to the repository root\n'
            "n_items: int = 3  # how many items to score\n"
            "ratio = 0.5  # a float\n"
            "flag = False  # a bool\n"
            'label = "demo"  # a str\n'
            "image_size = [256, 256]  # a list, e.g. -p image_size \"[512, 512]\"\n"
            "shape = (2, 3)  # a tuple\n"
            'options = {"mode": "fast"}  # a dict\n'
            "threshold = None  # anything YAML can express, or None\n"
            "limit: float | None = None  # an optional float\n"
            "fail_at_end = False  # raise after writing metrics.json (tests of failed runs)\n"
            'output_dir = ""  # folder for metrics.json; empty: the working directory\n'
        ),
        new_code_cell(
            "import json, os, sys\n"
            "from pathlib import Path\n"
            "\n"
            "out = Path(output_dir or '.')\n"
            "out.mkdir(parents=True, exist_ok=True)\n"
            "params = dict(data_dir=data_dir, n_items=n_items, ratio=ratio, flag=flag, label=label,\n"
            "              image_size=image_size, shape=shape, options=options, threshold=threshold,\n"
            "              limit=limit)\n"
            "metrics = {\n"
            "    'score': ratio * n_items,\n"
            "    'n_items': n_items,\n"
            "    'nested': {'auroc': 0.5 + ratio / 4},\n"
            "    'types': {k: type(v).__name__ for k, v in params.items()},\n"
            "    'values': params,\n"
            "    'cwd': os.getcwd(),\n"
            "    'python': sys.executable,\n"
            "    'output_dir': str(out.resolve()),\n"
            "}\n"
            "(out / 'metrics.json').write_text(json.dumps(metrics, indent=2))\n"
            "print('score', metrics['score'])"
        ),
        new_code_cell(
            "import base64\n"
            "from IPython.display import HTML, Image, display\n"
            f"display(Image(data=base64.b64decode('{RED_PNG}')))\n"
            "display(HTML('<p id=\"html-output\">an html output</p>'))\n"
            "if fail_at_end:\n"
            "    raise RuntimeError('failing at the end, as asked')"
        ),
    ),
    "holoviews_plot": notebook(
        new_markdown_cell("# HoloViews fixture\n\nA Bokeh plot through `hv.extension('bokeh')` "
                          "(CDN resources by default): its report must still work offline."),
        params_cell(
            "n_points = 20  # points on the curve\n"
            'output_dir = ""  # folder for metrics.json; empty: the working directory\n'
        ),
        new_code_cell(
            "import json, math\n"
            "from pathlib import Path\n"
            "import holoviews as hv\n"
            "hv.extension('bokeh')\n"
            "ys = [math.sin(i / 3) for i in range(n_points)]\n"
            "Path(output_dir or '.', 'metrics.json').write_text(json.dumps({'n_points': n_points, 'peak': max(ys)}))\n"
            "hv.Curve(ys).opts(width=400, height=250, title='a curve')"
        ),
    ),
    "failing": notebook(
        params_cell('output_dir = ""  # folder for metrics.json\n'),
        new_code_cell("print('before the failure')"),
        new_code_cell("# this cell fails on purpose\n"
                      "raise ValueError('boom: the fixture fails on purpose')"),
        new_code_cell("print('never reached')"),
    ),
    "sleepy": notebook(
        params_cell(
            "seconds = 30.0  # how long the second cell sleeps\n"
            "ignore_interrupt = False  # ignore SIGINT, so only a kill stops the kernel\n"
            'output_dir = ""  # a file named "started" is written here when the sleep begins\n'
        ),
        new_code_cell(
            "import pathlib, signal, time\n"
            "if ignore_interrupt:\n"
            "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "pathlib.Path(output_dir or '.', 'started').write_text('sleeping')\n"
            "time.sleep(seconds)"
        ),
        new_code_cell("print('woke up')"),
    ),
    "no_params": notebook(
        new_code_cell("print('a notebook without a parameters cell')"),
    ),
}


def main() -> None:
    for name, nb in FIXTURES.items():
        nbformat.validate(nb)
        path = HERE / f"{name}.ipynb"
        with open(path, "w", encoding="utf-8") as fh:
            nbformat.write(nb, fh)
        print("wrote", path)
    png = HERE / "pixel.png"
    if not png.exists():
        import base64

        png.write_bytes(base64.b64decode(RED_PNG))
        print("wrote", png)


if __name__ == "__main__":
    main()
