"""Interop tests run against the real server started by the end-to-end fixtures."""

from tests.e2e.conftest import browser, server  # noqa: F401  (fixtures)
