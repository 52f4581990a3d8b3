"""Hypothesis profiles for the hostile-input suite.

`ci` (when CI is set): the same examples every run (derandomize), a bounded number of them, no
deadline (a shared CI core is noisy) and no example database written into the repository.
The local profile is the same, randomised, so running it again explores further. Each test
reuses its one function-scoped app for every example; the examples do not depend on each other.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", derandomize=True, max_examples=60, print_blob=True, **COMMON)
settings.register_profile("local", max_examples=60, **COMMON)
default = "ci" if os.environ.get("CI") else "local"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or default)


import pytest  # noqa: E402

from tests.helpers import RP, Harness  # noqa: E402


@pytest.fixture
def rp(idp: Harness) -> RP:
    """One confidential client, registered once per test (not per example)."""
    return idp.client(
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        post_logout_redirect_uris=["https://rp.example/signed-out"],
    )
