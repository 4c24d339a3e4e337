import os
import sys

import pytest

# Tests run against the source tree even without an install.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "test.db")
