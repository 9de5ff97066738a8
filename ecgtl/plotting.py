"""Saving Plotly figures: self-contained HTML (plotly.js embedded once per page, so it renders offline), PNG."""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from ecgtl.errors import EcgtlError


def escape(text: object) -> str:
    """The one escaping path for every string that reaches a page ecgtl writes (names, tags, labels, file names,
    messages): `<`, `>`, `&` and both quotes become entities."""
    return html.escape(str(text), quote=True)


def figures_to_html(figures: Sequence[go.Figure], title: str = "ecgtl", header: str = "", footer: str = "") -> str:
    """One HTML page holding several figures, with plotly.js embedded once (about 4.7 MB). `title` is plain text
    (escaped here); `header` and `footer` are HTML placed around them (navigation, tables, notes), whose
    callers escape every string they put in with `escape`. Plotly's own JSON escapes `</script>`."""
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, figure in enumerate(figures)
    ]
    body = "\n".join(parts)
    style = ("<style>body{font-family:sans-serif;margin:1.5em;color:#222} nav a{margin-right:1em} "
             "table{border-collapse:collapse;margin:0.8em 0} td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right} th{background:#f3f3f3} .note{color:#555}</style>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{style}</head>"
            f"<body>{header}{body}{footer}</body></html>")


_RENDERER: dict[str, bool] = {}


def _start_png_renderer() -> None:
    """One Chromium for every PNG of this process (kaleido's sync server), stopped at exit: a PNG costs about
    0.2 s instead of the 2-7 s of starting a browser for each (every evaluation report draws one)."""
    if "started" in _RENDERER:
        return
    _RENDERER["started"] = False
    try:
        import atexit

        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)
        _RENDERER["started"] = True
    except Exception:  # noqa: BLE001 - no kaleido or no browser: write_image then says why, as before
        pass


def save_figure(figure: go.Figure, path: str | Path, scale: float = 1.0) -> Path:
    """Write `.html` (self-contained) or `.png` (kaleido, needs a Chromium on PATH) by the suffix."""
    import tempfile

    from ecgtl.files import check_targets, write_files

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".png"):
        raise EcgtlError(f"{path}: unsupported figure format {suffix or '(none)'}; use .html or .png")
    folder = check_targets(path.parent, [path.name])
    if suffix == ".html":
        return write_files(folder, {path.name: figures_to_html([figure], title=path.stem)})[0]
    with tempfile.TemporaryDirectory(dir=folder, prefix=".png-") as tmp:  # kaleido writes, then one rename
        drawn = Path(tmp) / "figure.png"
        try:
            _start_png_renderer()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "kopts ignored when using a server": none are given
                figure.write_image(drawn, scale=scale)
        except Exception as exc:  # kaleido raises several types when Chromium is missing
            raise EcgtlError(f"{path}: PNG export failed ({str(exc).splitlines()[0]}); install kaleido and "
                             "Chromium, or write .html") from None
        return write_files(folder, {path.name: drawn})[0]
