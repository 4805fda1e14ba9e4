"""Makes ``pytest --pyargs checks.suite`` load the dra-lab plugin (hooks, options, fixtures)."""

from checks.suite.plugin import *  # noqa: F403
from checks.suite.plugin import _dra_driver, pytest_addoption, pytest_configure  # noqa: F401
