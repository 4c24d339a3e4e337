"""Alias of :mod:`synadb.integrations.torch` (``from synadb.torch import SynaDataset``)."""

from synadb.integrations.torch import *  # noqa: F403  (an alias module)
from synadb.integrations.torch import __all__  # noqa: F401
