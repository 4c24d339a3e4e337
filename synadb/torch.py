"""Alias of :mod:`synadb.integrations.torch` (``from synadb.torch import SynaDataset``)."""

from synadb.integrations.torch import *  # noqa: F401,F403
from synadb.integrations.torch import __all__  # noqa: F401
