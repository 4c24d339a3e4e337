"""Converters that the framework adapters lend to the components.

The layers (DESIGN.md) run one way: ``tensors``, ``tracking`` and
``registry`` never import ``synadb.integrations``.  Yet
``TensorEngine.get_tensor_torch`` must make a ``torch.Tensor`` and the
tracker must ``torch.save`` a state_dict.  So a component asks this registry
for a converter by name, and an adapter supplies it:

* an adapter registers its converters with :func:`register` when it is
  imported (so a user who imported it pays nothing more);
* otherwise :func:`get` loads the ``synadb.converters`` entry point of that
  name (declared in pyproject.toml), which imports the adapter.  The
  component names a converter, never a module.

Names in use:

=================  ====================================================
``torch_tensor``   ``(engine, pattern, device, dtype) -> torch.Tensor``
``tf_tensor``      ``(engine, pattern, dtype) -> tf.Tensor``
``torch_save``     ``(obj) -> bytes`` (a module is saved as its state_dict)
``torch_load``     ``(raw, map_location) -> obj``, ``weights_only=True``
``keras_save``     ``(model) -> bytes``: the ``.keras`` zip of ``model.save``
``keras_load``     ``(raw, *, compile, safe_mode, custom_objects) -> model``
=================  ====================================================

synadb's own converters are also found by the adapter module that provides
them (:data:`_OWN`) when no entry point names them: a source tree installed
before a converter was added has stale entry points, and a user who saves a
Keras model should not have to reinstall synadb for the registry to take it.

Nothing here imports a framework or ``importlib.metadata`` until a
converter is first asked for: ``import synadb`` stays light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import errors

__all__ = ["register", "get"]

GROUP = "synadb.converters"
# name -> (pip package, extra) for the MissingDependency message.
_NEEDS = {"torch_tensor": ("torch", "torch"), "torch_save": ("torch", "torch"),
          "torch_load": ("torch", "torch"), "tf_tensor": ("tensorflow", "tensorflow"),
          "keras_save": ("tensorflow", "tensorflow"),
          "keras_load": ("tensorflow", "tensorflow")}
# name -> the synadb adapter that registers it on import (the same modules
# the entry points in pyproject.toml name), for when no entry point does.
_OWN = {"torch_tensor": "synadb.integrations.torch",
        "tf_tensor": "synadb.integrations.tensorflow",
        "torch_save": "synadb.integrations._torch_io",
        "torch_load": "synadb.integrations._torch_io",
        "keras_save": "synadb.integrations.tensorflow",
        "keras_load": "synadb.integrations.tensorflow"}

_converters: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def register(name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` the converter called ``name`` (adapters call this on import)."""
    with _lock:
        _converters[name] = fn


def get(name: str, feature: str = "") -> Callable[..., Any]:
    """The converter called ``name``, loading its adapter through the
    ``synadb.converters`` entry points (or, for synadb's own converters, by
    its module) if no adapter registered it yet.

    Raises:
        MissingDependency: the framework is not installed (or no installed
            package provides the converter).
    """
    fn = _converters.get(name)
    if fn is not None:
        return fn
    package, extra = _NEEDS.get(name, (name, name))
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    for ep in found:
        try:
            loaded = ep.load()
        except errors.MissingDependency:
            raise
        except ImportError as e:  # the framework itself is missing
            raise errors.MissingDependency(package, extra, feature or name) from e
        with _lock:
            # The adapter may have registered itself while importing.
            fn = _converters.setdefault(name, loaded)
        return fn
    module = _OWN.get(name)
    if module is not None:
        from importlib import import_module

        try:
            import_module(module)  # registers its converters
        except errors.MissingDependency:
            raise
        except ImportError as e:
            raise errors.MissingDependency(package, extra, feature or name) from e
        fn = _converters.get(name)
        if fn is not None:
            return fn
    err = errors.MissingDependency(package, extra, feature or name)
    if _installed(package):
        # The framework is here but no entry point names the converter: the
        # synadb metadata is stale (a source tree never installed, or
        # installed before the converter existed).
        err.args = (f"no installed synadb provides the {name!r} converter for "
                    f"{feature or name}: reinstall synadb (pip install -e . in a source "
                    "tree) so that its entry points are registered",)
    raise err


def _installed(package: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(package) is not None
    except (ImportError, ValueError):
        return False
