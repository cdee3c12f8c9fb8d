import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(items):
    for item in items:
        if "cuda" in item.name:
            item.add_marker(pytest.mark.cuda)
