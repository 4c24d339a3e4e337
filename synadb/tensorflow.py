"""Alias of :mod:`synadb.integrations.tensorflow` (``from synadb.tensorflow import syna_dataset``)."""

from synadb.integrations.tensorflow import *  # noqa: F403  (an alias module)
from synadb.integrations.tensorflow import __all__  # noqa: F401
