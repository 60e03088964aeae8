"""Parity report pictures: per-layer max error along the network, as PNG or self-contained HTML.

``write_report(report, "report.html")`` (or ``.png``). The plot puts the mapped layers in network
order on the x axis and their max abs / max rel error on a log y axis, with the tolerance and the
first diverging layer marked, so a user sees at a glance where the error grows. Drawn with
matplotlib's object API on an Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .errors import BadInputError, XlateError

_FLOOR = 1e-12  # exact zeros drawn on the log axis at this height
_CEILING = 1e6  # and infinite or huge errors at this one


def _figure(report):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise XlateError("the report picture needs matplotlib", hint="pip install 'xlate[report]'") from e

    rows = report.per_layer or []
    points = rows or report.per_output  # per layer when localized, else per output
    labels = [p.name for p in points]
    abs_err = [p.max_abs_err for p in points]
    rel_err = [p.max_rel_err for p in points]
    passed = [p.passed for p in points]
    n = len(labels)

    fig = Figure(figsize=(max(6.0, min(0.35 * n + 3, 24.0)), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(n))

    def clip(values):
        # relative errors against exact zeros (after a ReLU) are astronomically large: cap them
        return [min(max(v, _FLOOR), _CEILING) for v in values]

    ax.plot(xs, clip(abs_err), marker="o", color="#1f77b4", label="max abs error")
    ax.plot(xs, clip(rel_err), marker=".", linestyle="--", color="#7f7f7f", alpha=0.8, label="max rel error")
    for x, v, ok in zip(xs, clip(abs_err), passed):
        if not ok:
            ax.plot([x], [v], marker="o", color="#d62728", markersize=8)
    ax.axhline(report.atol, color="#2ca02c", linestyle=":", label=f"atol {report.atol:g}")
    floors = [p.floor for p in points]
    if report.floor_factor and any(f is not None for f in floors):
        # the rounding rule's limit where it was measured: floor_factor x the source's own rounding
        ax.plot([x for x, f in zip(xs, floors) if f is not None],
                clip([report.floor_factor * f for f in floors if f is not None]), linestyle=":", marker="_",
                color="#9467bd", label=f"{report.floor_factor:g}x source's own rounding")
        ax.plot([x for x, p in zip(xs, points) if p.target_vs_ref64 is not None],
                clip([p.target_vs_ref64 for p in points if p.target_vs_ref64 is not None]), linestyle="none",
                marker="x", color="#9467bd", label="target's distance from the reference")
    first = report.first_divergence
    if first is not None and rows:
        i = next(k for k, r in enumerate(rows) if r is first or r.name == first.name)
        ax.axvline(i, color="#d62728", alpha=0.4)
        ax.annotate(f"first divergence: {first.name} -> {first.target_name}", (i, clip([first.max_abs_err])[0]),
                    textcoords="offset points", xytext=(6, 8), color="#d62728", fontsize=9)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=60 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=8)
    ax.set_xlabel("layer (network order)" if rows else "output (no per-layer data: run with per_layer=True)")
    ax.set_ylabel("error")
    status = "PASS" if report.passed else "FAIL"
    ax.set_title(f"{status}: {report.source} -> {report.target}" + (f" via {report.path}" if report.path else "")
                 + f", {report.device}, {report.dtype}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def render_png(report) -> bytes:
    """The per-layer error plot as PNG bytes."""
    buf = io.BytesIO()
    _figure(report).savefig(buf, format="png")
    return buf.getvalue()


def render_html(report) -> str:
    """A self-contained HTML page: summary, the plot (embedded PNG), output and per-layer tables."""
    png = base64.b64encode(render_png(report)).decode()
    esc = html.escape
    status = "PASS" if report.passed else "FAIL"
    color = "#2ca02c" if report.passed else "#d62728"
    out_rows = "".join(
        f"<tr><td>{esc(o.name)}</td><td>{'x'.join(map(str, o.shape))}</td><td>{o.max_abs_err:.3g}</td>"
        f"<td>{o.max_rel_err:.3g}</td><td>{_g(o.floor)}</td><td>{_g(o.target_vs_ref64)}</td>"
        f"<td>{o.mismatched}/{o.total}</td><td>{'yes' if o.passed else 'NO'}</td>"
        f"<td>{esc('; '.join(t for t in (o.note, o.reason) if t))}</td></tr>" for o in report.per_output)
    layer_rows = "".join(
        f"<tr class=\"{'' if r.passed else 'bad'}\"><td>{i}</td><td>{esc(r.name)}</td><td>{esc(r.target_name)}</td>"
        f"<td>{esc(r.row or '')}</td><td>{r.max_abs_err:.3g}</td><td>{r.max_rel_err:.3g}</td>"
        f"<td>{_g(r.floor)}</td><td>{_g(r.target_vs_ref64)}</td><td>{'yes' if r.passed else 'NO'}</td>"
        f"<td>{esc('; '.join(t for t in (r.note, r.reason) if t and r.rule != 'tolerance'))}</td></tr>"
        for i, r in enumerate(report.per_layer or []))
    first = report.first_divergence
    first_html = (f"<p class=\"bad\"><b>First diverging layer:</b> {esc(first.name)} &rarr; {esc(first.target_name)} "
                  f"(max abs {first.max_abs_err:.3g}, max rel {first.max_rel_err:.3g})</p>" if first else "")
    layers_html = (f"<h2>Per layer (network order)</h2><table><tr><th>#</th><th>source layer</th><th>target</th>"
                   f"<th>row</th><th>max abs</th><th>max rel</th><th>floor</th><th>vs ref</th><th>ok</th><th>note</th></tr>{layer_rows}</table>"
                   if report.per_layer else "<p>No per-layer data (run the check with per-layer localization).</p>")
    floor_rule = (f", or within {report.floor_factor:g}x the source's own rounding (reference: {esc(report.reference)})"
                  if report.floor_factor and report.reference else
                  f", or within {report.floor_factor:g}x the source's own rounding" if report.floor_factor else "")
    env = ", ".join(f"{esc(k)} {esc(str(v))}" for k, v in report.versions.items())
    where = ", ".join(f"{esc(k)}: {esc(str(v))}" for k, v in (report.devices or {}).items()) or esc(report.device)
    dtypes = ", ".join(f"{esc(k)}: {esc(str(v))}" for k, v in (report.dtypes or {}).items()) or esc(report.dtype)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xlate parity report: {status}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
tr.bad td, p.bad {{ color: #d62728; }}
.status {{ color: {color}; font-weight: bold; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>xlate parity report: <span class="status">{status}</span></h1>
<p>{esc(report.source)} &rarr; {esc(report.target)}{' via ' + esc(report.path) if report.path else ''};
max abs error {report.max_abs_err:.3g}, max rel error {report.max_rel_err:.3g};
tolerance atol {report.atol:g}, rtol {report.rtol:g}{floor_rule}; {report.samples} sample(s), seed {report.seed},
{'train' if report.training else 'eval'} mode.</p>
<p>Devices: {where}. Dtypes: {dtypes}.</p>
{first_html}
<img id="per-layer-plot" alt="per-layer max error along the network" src="data:image/png;base64,{png}">
<h2>Outputs</h2>
<table><tr><th>output</th><th>shape</th><th>max abs</th><th>max rel</th><th>floor</th><th>vs ref</th>
<th>mismatched</th><th>ok</th><th>note</th></tr>
{out_rows}</table>
{layers_html}
{'<p>' + esc(report.message) + '</p>' if report.message else ''}
<p style="color:#888;font-size:0.8em">{env}</p>
</body></html>
"""


def _g(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def write_report(report, path) -> Path:
    """Write the report picture to ``path``: ``.html``/``.htm`` (self-contained) or ``.png``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        data = render_html(report).encode()
    elif suffix == ".png":
        data = render_png(report)
    else:
        raise BadInputError(f"--report {path}: use a .html or .png file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
