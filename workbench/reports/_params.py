"""A notebook's tagged ``parameters`` cell: what it declares and how values are parsed.

The cell is read with :mod:`ast` (not executed), so multi-line defaults, type annotations
and trailing ``# comments`` are all understood. A parameter's type is its annotation when
it has one (``n: int = 3``, ``limit: float | None = None``), else the type of its default.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import difflib
import io
import json
import tokenize
from pathlib import Path
from typing import Any, Mapping

from workbench.errors import WorkbenchError

__all__ = [
    "NotebookParameter",
    "ParameterError",
    "notebook_parameters",
    "read_notebook",
    "resolve_parameters",
    "describe_parameters",
    "OUTPUT_DIR",
]

#: The parameter ``report run`` sets to the run folder, in notebooks that declare it.
OUTPUT_DIR = "output_dir"

_BASE_TYPES = ("int", "float", "bool", "str", "list", "tuple", "dict")
_NONE_WORDS = {"none", "null", "~", ""}
_TRUE_WORDS = {"true", "1"}
_FALSE_WORDS = {"false", "0"}


class ParameterError(WorkbenchError, ValueError):
    """A parameter name or value does not fit the notebook's ``parameters`` cell."""


class _NotLiteral:
    """Marker for a default that is an expression, not a literal (``Path("x")``, ``os.cpu_count()``)."""

    def __repr__(self) -> str:  # pragma: no cover - never shown
        return "<expression>"


NOT_LITERAL = _NotLiteral()


@dataclasses.dataclass(frozen=True)
class NotebookParameter:
    """One assignment in a notebook's ``parameters`` cell.

    Attributes
    ----------
    name : str
        Variable name.
    kind : str
        The declared type: one of ``int``, ``float``, ``bool``, ``str``, ``list``, ``tuple``,
        ``dict``, or ``any`` (a ``None`` default without annotation, or an expression).
    optional : bool
        ``None`` is accepted (annotation ``X | None`` / ``Optional[X]``, or a ``None`` default).
    default : object
        The default value, or ``NOT_LITERAL`` when the default is an expression.
    default_source : str
        The default as written in the cell.
    annotation : str or None
        The annotation as written, if any.
    help : str
        The trailing comment (or the comment lines just above), without ``#``.
    """

    name: str
    kind: str
    optional: bool
    default: Any
    default_source: str
    annotation: str | None = None
    help: str = ""

    @property
    def type_name(self) -> str:
        """Human-readable type, e.g. ``int``, ``float | None``, ``any``."""
        if self.kind == "any":
            return "any"
        return f"{self.kind} | None" if self.optional else self.kind

    def convert(self, value: Any) -> Any:
        """Parse or check ``value`` against this parameter's type.

        Strings (from the command line) are parsed: ``int``/``float`` as numbers, ``bool`` from
        ``true``/``false``/``1``/``0``, lists, tuples and dicts as YAML/JSON
        (``"[512, 512]"``), ``any`` as YAML (``"3"`` -> 3, ``"abc"`` -> ``"abc"``), and
        ``none``/``null`` as ``None`` where ``None`` is allowed. Other values (from a YAML
        parameters file or Python) must already have the type; ints are accepted for floats
        and lists for tuples.

        Raises
        ------
        ParameterError
            The value cannot be read as the declared type; the message names the parameter,
            the expected type and the value found.
        """
        try:
            return self._convert(value)
        except ParameterError:
            raise
        except (ValueError, TypeError) as exc:
            raise self._error(value, str(exc)) from None

    # -- internals -------------------------------------------------------------------------

    def _error(self, value: Any, why: str = "") -> ParameterError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = (f"parameter {self.name!r} expects {self.type_name} (default {self.default_source}); "
               f"got {shown}")
        return ParameterError(msg + (f": {why}" if why else ""))

    def _convert(self, value: Any) -> Any:
        if isinstance(value, str) and self.optional and value.strip().lower() in _NONE_WORDS \
                and self.kind != "str":
            return None
        if value is None:
            if self.optional or self.kind == "any":
                return None
            raise self._error(value, "None is not allowed here (annotate it `X | None` to allow it)")
        kind = self.kind
        if kind == "any":
            if isinstance(value, str):
                return _plain(_yaml_value(value, self))
            return _check_literal(value, self)
        if kind == "str":
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise self._error(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str):
                word = value.strip().lower()
                if word in _TRUE_WORDS:
                    return True
                if word in _FALSE_WORDS:
                    return False
            raise self._error(value, "use true/false/1/0")
        if kind == "int":
            if isinstance(value, bool):
                raise self._error(value)
            if isinstance(value, int):
                return value
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    raise self._error(value, "not an integer") from None
            raise self._error(value)
        if kind == "float":
            if isinstance(value, bool):
                raise self._error(value)
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value.strip())
                except ValueError:
                    raise self._error(value, "not a number") from None
            raise self._error(value)
        # containers
        if isinstance(value, str):
            value = _plain(_yaml_value(value, self))
        if kind in ("list", "tuple"):
            if isinstance(value, (list, tuple)):
                items = [_check_literal(v, self) for v in value]
                return items if kind == "list" else tuple(items)
            raise self._error(value, f"write a {kind} like [1, 2]")
        if kind == "dict":
            if isinstance(value, Mapping):
                return {str(k): _check_literal(v, self) for k, v in value.items()}
            raise self._error(value, 'write a dict like {"a": 1}')
        raise self._error(value)  # pragma: no cover - all kinds handled above


def _yaml_value(text: str, param: NotebookParameter) -> Any:
    import yaml

    if text.strip().lower() in _NONE_WORDS:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise param._error(text, "not valid YAML/JSON: " + " ".join(str(exc).split())) from None


def _plain(value: Any) -> Any:
    """YAML dates and datetimes become ISO strings (they cannot be injected or stored in JSON)."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_literal(value: Any, param: NotebookParameter) -> Any:
    """Values injected into a notebook must be plain literals (papermill writes their repr)."""
    value = _plain(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_check_literal(v, param) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        return {str(k): _check_literal(v, param) for k, v in value.items()}
    raise param._error(value, f"{type(value).__name__} values cannot be passed to a notebook")


# -- reading the parameters cell ---------------------------------------------------------------

def read_notebook(path: str | Path):
    """Read an ``.ipynb`` file as an nbformat v4 node, with errors a user can act on.

    Raises
    ------
    WorkbenchError
        The file does not exist, is a folder, or is not a valid notebook.
    """
    import nbformat

    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"notebook not found: {path}")
    if path.is_dir():
        raise WorkbenchError(f"expected a notebook file (.ipynb), found a folder: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return nbformat.read(fh, as_version=4)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, nbformat.reader.NotJSONError) as exc:
        raise WorkbenchError(f"cannot read notebook {path}: {exc}") from None
    except Exception as exc:  # nbformat validation and version errors
        raise WorkbenchError(f"{path} is not a valid Jupyter notebook: {exc}") from None


def parameters_cell_index(nb) -> int | None:
    """Index of the first code cell tagged ``parameters``, or None."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def notebook_parameters(notebook) -> dict[str, NotebookParameter] | None:
    """The parameters a notebook declares in its cell tagged ``parameters``.

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode
        The notebook file, or a notebook already read.

    Returns
    -------
    dict of str to NotebookParameter or None
        Parameters in the order they are assigned (the last assignment of a name wins), or
        ``None`` when the notebook has no code cell tagged ``parameters``.

    Raises
    ------
    WorkbenchError
        The notebook cannot be read, or its parameters cell is not valid Python.

    Examples
    --------
    >>> params = notebook_parameters("notebooks/01_quickstart.ipynb")  # doctest: +SKIP
    >>> params["image_size"].type_name, params["image_size"].default  # doctest: +SKIP
    ('list', [256, 256])
    """
    nb = read_notebook(notebook) if isinstance(notebook, (str, Path)) else notebook
    index = parameters_cell_index(nb)
    if index is None:
        return None
    source = nb.cells[index].source
    return _parse_cell(source, where=f"{notebook if isinstance(notebook, (str, Path)) else 'notebook'}"
                                     f" (cell {index}, tagged 'parameters')")


def _parse_cell(source: str, where: str) -> dict[str, NotebookParameter]:
    # IPython magics and shell escapes are not Python: blank them (keeping line numbers).
    lines = source.splitlines()
    clean = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)
    try:
        tree = ast.parse(clean)
    except SyntaxError as exc:
        raise WorkbenchError(f"{where} is not valid Python: {exc.msg} (line {exc.lineno})") from None
    comments = _comments_by_line(clean)
    params: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name = node.target.id
            annotation = ast.get_source_segment(clean, node.annotation)
            value = node.value
        else:
            continue
        default_source = ast.get_source_segment(clean, value) or ""
        try:
            default = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default = NOT_LITERAL
        kind, optional = _declared_type(node.annotation if annotation else None, default)
        params.pop(name, None)  # re-assignment: keep the last, in its position
        params[name] = NotebookParameter(
            name=name, kind=kind, optional=optional, default=default,
            default_source=" ".join(default_source.split()), annotation=annotation,
            help=_help_for(node, comments, lines),
        )
    return params


def _comments_by_line(source: str) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def _help_for(node: ast.stmt, comments: dict[int, str], lines: list[str]) -> str:
    for line in (node.lineno, node.end_lineno or node.lineno):
        if line in comments and lines[line - 1].strip() and not lines[line - 1].lstrip().startswith("#"):
            return comments[line]
    above = []
    line = node.lineno - 1
    while line >= 1 and lines[line - 1].lstrip().startswith("#") and line in comments:
        above.append(comments[line])
        line -= 1
    return " ".join(reversed(above))


def _declared_type(annotation: ast.expr | None, default: Any) -> tuple[str, bool]:
    if annotation is not None:
        kind, optional = _annotation_type(annotation)
        if kind is not None:
            return kind, optional or default is None
    if default is NOT_LITERAL or default is None:
        return "any", True
    for kind in ("bool", "int", "float", "str", "list", "tuple", "dict"):
        if type(default).__name__ == kind:
            return kind, False
    return "any", True  # sets, bytes, complex: accept anything literal


def _annotation_type(node: ast.expr) -> tuple[str | None, bool]:
    """(kind, optional) for annotations like ``int``, ``list[int]``, ``float | None``, ``Optional[str]``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "int" as a string
        try:
            return _annotation_type(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return None, False
    if isinstance(node, ast.Constant) and node.value is None:
        return None, True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, lopt = _annotation_type(node.left)
        right, ropt = _annotation_type(node.right)
        kinds = {k for k in (left, right) if k is not None}
        return (kinds.pop() if len(kinds) == 1 else None), (lopt or ropt)
    name = _dotted_tail(node.value if isinstance(node, ast.Subscript) else node)
    if name is None:
        return None, False
    if isinstance(node, ast.Subscript) and name in ("Optional", "Union"):
        inner = node.slice
        parts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
        results = [_annotation_type(p) for p in parts]
        kinds = {k for k, _ in results if k is not None}
        optional = name == "Optional" or any(o for _, o in results)
        return (kinds.pop() if len(kinds) == 1 else None), optional
    name = {"List": "list", "Tuple": "tuple", "Dict": "dict", "Sequence": "list",
            "Mapping": "dict"}.get(name, name)
    if name in _BASE_TYPES:
        return name, False
    if name == "Any":
        return "any", True
    return None, False


def _dotted_tail(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


# -- validation -----------------------------------------------------------------------------

def describe_parameters(params: Mapping[str, NotebookParameter]) -> str:
    """One line per parameter: name, type, default and help, aligned for a terminal."""
    if not params:
        return "  (none)"
    rows = [(p.name, p.type_name, p.default_source, p.help) for p in params.values()]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = min(max(len(r[2]) for r in rows), 40)
    out = []
    for name, kind, default, help_ in rows:
        line = f"  {name:<{w0}}  {kind:<{w1}}  = {default:<{w2}}"
        if help_:
            line += f"  # {help_}"
        out.append(line.rstrip())
    return "\n".join(out)


def resolve_parameters(
    declared: Mapping[str, NotebookParameter] | None,
    values: Mapping[str, Any] | None,
    *,
    notebook_name: str = "the notebook",
    reserved: tuple[str, ...] = (OUTPUT_DIR,),
) -> dict[str, Any]:
    """Check names against the notebook's parameters and convert each value to its type.

    Parameters
    ----------
    declared : mapping of str to NotebookParameter, or None
        From :func:`notebook_parameters`; ``None`` when the notebook has no parameters cell.
    values : mapping of str to object
        Values to pass; strings are parsed (see :meth:`NotebookParameter.convert`).
    notebook_name : str
        Used in error messages.
    reserved : tuple of str
        Names the caller sets itself (``output_dir``); passing them is an error.

    Returns
    -------
    dict
        The converted values, in the order given.

    Raises
    ------
    ParameterError
        Unknown name (the message lists every valid name with its type, default and help),
        a reserved name, or a value that does not fit the declared type.
    """
    values = dict(values or {})
    if not values:
        return {}
    if declared is None:
        raise ParameterError(
            f"{notebook_name} has no code cell tagged 'parameters', so it takes no parameters "
            f"(got {', '.join(sorted(values))}). Tag the cell holding its defaults 'parameters' "
            "(JupyterLab: property inspector > cell tags)."
        )
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in reserved and name in declared:
            raise ParameterError(
                f"{name!r} is set by `workbench report run` to the run folder; do not pass it")
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"{notebook_name} has no parameter {name!r}.{hint} Valid parameters "
                f"(name, type, default):\n{describe_parameters(declared)}"
            )
        out[name] = declared[name].convert(value)
    return out
