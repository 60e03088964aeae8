"""Helpers for users' own test suites (pytest or any other runner).

    from xlate.testing import assert_parity

    def test_export_matches():
        assert_parity("net.pt2", "net.keras")            # files, any format xlate reads
        assert_parity(module, keras_model, inputs=(x,))   # or model objects
"""

from __future__ import annotations

__all__ = ["assert_parity"]


def assert_parity(source, target, inputs=None, *, atol: float = 1e-5, rtol: float = 1e-4, samples: int = 4,
                  seed: int = 0, device: str = "cpu", **load_options):
    """Assert that ``target`` computes the same numbers as ``source`` (one PyTorch, one Keras/TF).

    ``source``/``target``: model objects or paths (``.pt2``, ``.keras``, a SavedModel folder...;
    ``load_options`` such as ``model_class=``/``input_shapes=`` as for ``xlate check``).
    ``inputs``: None (seeded random inputs), arrays, or an ``.npz`` path, in the source's layout.
    Raises ``AssertionError`` with the readable report when any output differs by more than
    ``atol + rtol * |expected|``; returns the ``ParityReport`` when parity holds.
    """
    from .commands.check import compare_models

    report = compare_models(source, target, inputs, atol=atol, rtol=rtol, samples=samples, seed=seed, device=device,
                            **load_options)
    if not report.passed:
        raise AssertionError(f"parity failed: {_name(source)} vs {_name(target)}\n{report}")
    return report


def _name(obj) -> str:
    return str(obj) if isinstance(obj, (str,)) or hasattr(obj, "__fspath__") else type(obj).__name__
