import pytest

from tests.synth import write_suite


@pytest.fixture
def suite(tmp_path):
    """An empty results/<suite>/ (suite.yaml and plan.json as `moebench run` writes them) for synthetic runs."""
    return write_suite(tmp_path)
