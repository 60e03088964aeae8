"""The custom classes a ``.keras`` file names, and the modules that define them.

Keras finds a custom layer only when the module that registers it is imported, and it imports
no user module by itself. This module reads the file's ``config.json``, lists the classes that
come from outside Keras, and imports their modules when the user trusts the file (importing runs
that module's code); otherwise it says which module to make importable and how.
"""

from __future__ import annotations

import importlib
import json
import sys
import zipfile
from pathlib import Path

from .errors import BadInputError, one_line

#: modules Keras itself imports while deserializing (and xlate's own layers)
_KERAS_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp", "tf_keras", "tensorflow", "xlate", "builtins")


def custom_classes(config) -> dict[str, list[str]]:
    """{module: [class names]} for every object in a Keras config whose module is not Keras' own."""
    found: dict[str, list[str]] = {}
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, name = node.get("module"), node.get("class_name")
            if isinstance(module, str) and isinstance(name, str) and module.split(".")[0] not in _KERAS_PACKAGES:
                names = found.setdefault(module, [])
                if name not in names:
                    names.append(name)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _file_config(path: Path):
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None  # not a .keras archive with a readable config: Keras' own loader reports it


def import_custom_modules(path: Path, *, trust: bool) -> list[str]:
    """Import the not-yet-imported modules the ``.keras`` file's custom classes come from.

    Returns the modules imported. Without ``trust`` nothing is imported and a file that needs a
    module is refused, naming the module and its classes.
    """
    config = _file_config(Path(path))
    if config is None:
        return []
    needed = {m: names for m, names in custom_classes(config).items() if m not in sys.modules}
    if not needed:
        return []
    listing = "; ".join(f"{', '.join(names)} from {m}" for m, names in sorted(needed.items()))
    if not trust:
        raise BadInputError(f"{path} uses custom classes defined outside Keras ({listing})",
                            hint="import their module yourself, or rerun with --trust to let xlate import it "
                                 "(that runs the module's code; the module must be on PYTHONPATH)")
    for module in sorted(needed):
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - the user's module can raise anything while importing
            raise BadInputError(f"{path} needs the module {module} for {', '.join(needed[module])}, which cannot be "
                                f"imported ({type(e).__name__}: {one_line(e, 200)})",
                                hint="put the folder that holds the module on PYTHONPATH") from None
    return sorted(needed)
