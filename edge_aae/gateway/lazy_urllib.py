"""``urllib.request`` loaded on first use, not when paho is imported.

paho-mqtt imports ``urllib.request`` at the top of its client module for one purpose: proxy
settings from the environment, which it reads only when PySocks is installed (a gateway has no
use for it). The import pulls in ``http.client``, the ``email`` package, ``tempfile`` and the
compression modules: about 2 MB of the daemon's private memory, never used.

So before paho is imported, ``sys.modules["urllib.request"]`` is a placeholder module with the
real module's spec. Importing it again finds it and binds it; the first attribute anyone reads
from it (``getproxies``, ``urlopen``, ...) imports the real module, puts it in its place and
returns the attribute: code that uses ``urllib.request`` gets the real thing, one step late.
(:class:`importlib.util.LazyLoader` does not do here: the import system reads ``__spec__`` of a
module it finds, which makes the lazy module load on paho's own import statement.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import urllib
from typing import Any

NAME = "urllib.request"


class _Deferred(types.ModuleType):
    """Stands in for ``urllib.request`` until an attribute of it is read."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(load_real(), attr)


def load_real() -> types.ModuleType:
    """Import the real ``urllib.request`` in the placeholder's place (once) and return it."""
    current = sys.modules.get(NAME)
    if current is not None and not isinstance(current, _Deferred):
        return current
    sys.modules.pop(NAME, None)
    real = importlib.import_module(NAME)
    urllib.request = real  # type: ignore[attr-defined]
    return real


def defer_urllib_request() -> None:
    """Put the placeholder in ``sys.modules`` unless ``urllib.request`` is imported already."""
    if NAME in sys.modules:
        return
    spec = importlib.util.find_spec(NAME)
    if spec is None:  # pragma: no cover  # a stripped Python: paho's own import will say so
        return
    placeholder = _Deferred(NAME, "urllib.request, imported on first use")
    placeholder.__spec__ = spec
    placeholder.__file__ = spec.origin
    sys.modules[NAME] = placeholder
    urllib.request = placeholder  # type: ignore[attr-defined]  # as the import system binds a submodule
