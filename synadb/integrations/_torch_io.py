"""torch.save and torch.load for the tracker's artifacts and the registry.

The tracker and the registry know nothing of torch and never import this
module: they ask :mod:`synadb._convert` for the ``torch_save`` and
``torch_load`` converters, which this module registers when imported and
which the ``synadb.converters`` entry points (pyproject.toml) name.  They
ask only when handed a torch object (so the caller has torch loaded) or
when loading what was saved as one.  Loading always uses
``weights_only=True``: a saved file can hold tensors and plain containers,
never code.
"""

from __future__ import annotations

import io
from typing import Any

from .. import _convert, errors

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise errors.MissingDependency("torch", "torch", "torch artifacts and models") from e

__all__ = ["to_bytes", "from_bytes"]


def to_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` (a module is saved as its ``state_dict``)."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()  # the weights, never the class
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def from_bytes(raw: bytes | bytearray | memoryview, map_location: Any = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` of bytes written by :func:`to_bytes`."""
    return torch.load(io.BytesIO(bytes(raw)), weights_only=True, map_location=map_location)


_convert.register("torch_save", to_bytes)
_convert.register("torch_load", from_bytes)
