"""The wheel ships the mapping table inside the package, and an installed xlate reads it."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_table_and_the_installed_package_reads_it(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("xlate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tables = sorted(n for n in names if n.startswith("xlate/mappings/") and n.endswith(".toml"))
    assert "xlate/mappings/layers.toml" in tables and "xlate/mappings/_unsupported.toml" in tables
    assert "xlate/keras_layers/constant.py" in names
    assert not [n for n in names if n.startswith(("tests/", "fixtures/"))]

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, timeout=600)
    script = ("import xlate.table as t; from pathlib import Path; "
              "print(t.mappings_dir()); print(len(t.table()))")
    # run outside the checkout, with the installed copy first on the path
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    where, count = run.stdout.split()
    assert Path(where).is_relative_to(target) and int(count) >= 80
