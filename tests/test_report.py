"""The report picture: HTML (self-contained, embedded PNG) and PNG renders of per-layer error."""

from __future__ import annotations

import base64
import re

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytest.importorskip("matplotlib")

from tests.test_diagnose import _pair
from xlate.errors import BadInputError
from xlate.parity import check_parity
from xlate.report import render_png, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def diverging_report():
    module, model = _pair("torch2keras")
    kernel, bias = model.get_layer("conv_b").get_weights()
    model.get_layer("conv_b").set_weights([kernel, bias + 0.05])
    return check_parity(module, model, per_layer=True)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_png_report_is_a_real_plot(tmp_path, diverging_report):
    path = write_report(diverging_report, tmp_path / "report.png")
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width >= 600 and height >= 400
    # a plot, not a blank canvas: many distinct colours (lines, markers, text)
    from matplotlib.image import imread

    pixels = imread(path)
    colours = {tuple(p) for p in (pixels[::4, ::4, :3] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 20
    assert pixels[..., 0].std() > 0.05


def test_html_report_is_self_contained_and_has_the_plot(tmp_path, diverging_report):
    path = write_report(diverging_report, tmp_path / "out" / "report.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    assert "FAIL" in text
    match = re.search(r'<img id="per-layer-plot"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert match, "no embedded plot"
    _png_size(base64.b64decode(match.group(1)))
    assert "First diverging layer:</b> 2 &rarr; conv_b" in text
    for row in diverging_report.per_layer:  # every layer in the table, in order
        assert f"<td>{row.target_name}</td>" in text
    assert "http://" not in text and "https://" not in text  # nothing fetched when opened


def test_report_without_per_layer_data_plots_the_outputs(tmp_path):
    module, model = _pair("torch2keras")
    report = check_parity(module, model)
    data = render_png(report)
    _png_size(data)
    text = write_report(report, tmp_path / "r.html").read_text()
    assert "PASS" in text and "No per-layer data" in text


def test_unknown_report_suffix_is_bad_input(tmp_path, diverging_report):
    with pytest.raises(BadInputError, match=".html or .png"):
        write_report(diverging_report, tmp_path / "report.pdf")
