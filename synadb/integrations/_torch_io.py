"""torch.save and torch.load for the tracker's artifacts and the registry.

The tracker and the registry know nothing of torch: when they are handed a
torch object (a tensor, a module, a state_dict), which means the caller has
torch loaded already, they call these.  Loading always uses
``weights_only=True``: a saved file can hold tensors and plain containers,
never code.
"""

from __future__ import annotations

import io
from typing import Any

import torch

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
