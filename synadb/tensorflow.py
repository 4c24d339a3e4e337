"""Alias of :mod:`synadb.integrations.tensorflow` (``from synadb.tensorflow import syna_dataset``)."""

from synadb.integrations.tensorflow import *  # noqa: F401,F403
from synadb.integrations.tensorflow import __all__  # noqa: F401
