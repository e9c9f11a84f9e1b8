"""Render DVC's plots as one offline HTML page (``python -m pipeline.render_plots``).

``dvc plots show`` writes an HTML page that loads vega from a CDN, so it is blank without a
network. This reads the same plots as JSON (``dvc plots show --json``: every plot of ``dvc.yaml``
with its data and x/y fields) and draws each with matplotlib into one self-contained page: PNGs
inlined, no JavaScript, no network. Image plots (``reports/figures/*.png``) are inlined as they are.

    python -m pipeline.render_plots                       # runs `python -m dvc plots show --json`
    python -m dvc plots diff main --json > plots.json && python -m pipeline.render_plots plots.json

Writes ``dvc_plots/offline.html`` (``--out`` to change). Empty cells are left out, never drawn as 0.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.cli import UserError, run_stage  # noqa: E402
from pipeline.io import write_text  # noqa: E402

#: Row keys DVC adds to tell the series of one plot apart (revision, file, y column).
SERIES_KEYS = ("rev", "filename", "field")


def _find(node: Any, key: str) -> Iterator[Any]:
    """Every value under ``key`` anywhere in a nested JSON ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _find(item, key)


def axis_fields(spec: dict) -> tuple[str, str]:
    """The x and y data fields of a DVC vega-lite plot spec (the first x and y encodings)."""
    xs = [e["field"] for e in _find(spec, "x") if isinstance(e, dict) and "field" in e]
    ys = [e["field"] for e in _find(spec, "y") if isinstance(e, dict) and "field" in e]
    if not xs or not ys:
        raise ValueError("no x/y field in the plot's spec")
    return xs[0], ys[0]


def _number(value: Any) -> float | None:
    """A cell as a float; empty cells and text are None (left out, never 0)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def series(spec: dict) -> tuple[str, str, dict[str, list[tuple[float, float]]]]:
    """x field, y field and the points of each series (label -> sorted ``(x, y)``) of a vega plot."""
    x, y = axis_fields(spec)
    rows = spec.get("data", {}).get("values", [])
    varying = [k for k in SERIES_KEYS if len({str(r.get(k)) for r in rows}) > 1]
    out: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        label = " · ".join(str(row.get(k)) for k in varying) or str(row.get("field") or y)
        xv, yv = _number(row.get(x)), _number(row.get(y))
        if xv is not None and yv is not None:
            out.setdefault(label, []).append((xv, yv))
    return x, y, {label: sorted(points) for label, points in out.items()}


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def draw(title: str, spec: dict) -> bytes:
    """One vega plot as a PNG: a line with markers per series."""
    x, y, lines = series(spec)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in lines.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
    ax.set_xlabel(x)
    ax.set_ylabel("value" if y == "dvc_inferred_y_value" else y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _image(entry: dict, root: Path) -> bytes | None:
    url = entry.get("url") or entry.get("src") or ""
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    path = Path(url) if Path(url).is_absolute() else root / url
    return path.read_bytes() if path.is_file() else None


def render(plots: dict, root: Path) -> str:
    """The HTML page of ``dvc plots show --json``'s output (``{"data": {id: [entry, ...]}}``)."""
    data = plots.get("data", plots)
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>DVC plots</title>",
             "<style>body{font-family:sans-serif;margin:2em} figure{display:inline-block;margin:1em;"
             "vertical-align:top} figcaption{font-size:0.9em;max-width:600px}</style></head><body>",
             "<h1>DVC plots</h1>"]
    for plot_id, entries in data.items():
        for entry in entries:
            revisions = ", ".join(entry.get("revisions", []))
            caption = html.escape(f"{plot_id} ({revisions})" if revisions else plot_id)
            if entry.get("type") == "image":
                png = _image(entry, root)
            else:
                try:
                    png = draw(plot_id, entry["content"])
                except (KeyError, ValueError) as exc:
                    parts.append(f"<p>{caption}: not drawn ({html.escape(str(exc))})</p>")
                    continue
            if png is None:
                parts.append(f"<p>{caption}: image not found</p>")
                continue
            encoded = base64.b64encode(png).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{encoded}' alt='{caption}'>"
                         f"<figcaption>{caption}</figcaption></figure>")
    errors = plots.get("errors")
    if errors:
        parts.append(f"<h2>Errors</h2><pre>{html.escape(json.dumps(errors, indent=1))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python -m pipeline.render_plots", description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="?", type=Path,
                        help="output of `dvc plots show/diff --json` (default: run `dvc plots show --json` here)")
    parser.add_argument("--out", type=Path, default=Path("dvc_plots/offline.html"), help="the page to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.json is not None:
        text = args.json.read_text()
    else:
        done = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise UserError(f"`dvc plots show --json` failed: {done.stderr.strip()[-500:]}")
        text = done.stdout
    try:
        plots = json.loads(text)
    except ValueError as exc:
        raise UserError(f"not the JSON of `dvc plots show --json` ({exc})") from None
    write_text(args.out, render(plots, Path.cwd()))
    print(f"{args.out} ({sum(len(v) for v in plots.get('data', plots).values())} plots, offline)")


if __name__ == "__main__":
    run_stage(main)
