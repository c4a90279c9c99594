"""Fixtures of the conformance suite.

The suite reads one JSON document (env ``KONG_CONFORMANCE_JSON``) in the shape ``kong-cluster.sh up`` prints:
``mode``, ``admin_urls``, ``proxy_urls``, ``status_urls``, ``control_plane_admin_url`` and ``nodes[]`` with
``name``, ``role``, ``admin_url``, ``proxy_url`` and ``status_url``. ``tests/conformance/adapter.py`` writes the
same document for the simulator.

Checks are marked with the modes they apply to (``@pytest.mark.modes("traditional", "dbless")``); a check whose
modes do not include the cluster's mode is skipped with a reason that names both (run pytest with ``-rs``).
"""

import json
import os
import time
import uuid

import pytest
import requests

MODES = ("traditional", "hybrid", "dbless")


def _load_cluster():
    path = os.environ.get("KONG_CONFORMANCE_JSON")
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


CLUSTER = _load_cluster()


def pytest_configure(config):
    """Register the ``modes`` marker."""
    config.addinivalue_line("markers", "modes(*names): the cluster modes (traditional, hybrid, dbless) a check applies to")


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    """Skip (with a reason) what does not apply to the cluster's mode; everything when no cluster is given."""
    for item in items:
        if CLUSTER is None:
            item.add_marker(pytest.mark.skip(reason="no cluster: set KONG_CONFORMANCE_JSON (python -m tests.conformance.run)"))
            continue
        marker = item.get_closest_marker("modes")
        if marker is None:
            continue
        unknown = set(marker.args) - set(MODES)
        if unknown:
            raise pytest.UsageError("%s: unknown mode(s) %s" % (item.nodeid, sorted(unknown)))
        if CLUSTER["mode"] not in marker.args:
            item.add_marker(pytest.mark.skip(reason="applies to %s, the cluster is %s (%s)"
                                             % ("/".join(marker.args), CLUSTER["mode"], CLUSTER.get("engine", "real"))))


class Client:
    """A keep-alive session bound to one base URL: ``client.get("/upstreams")``."""

    def __init__(self, base):
        self.base = base
        self.session = requests.Session()

    def request(self, method, path, **kwargs):
        """Any method; a 10 s timeout unless given."""
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path, **kwargs):
        """GET."""
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        """POST."""
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        """PUT."""
        return self.request("PUT", path, **kwargs)

    def patch(self, path, **kwargs):
        """PATCH."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        """DELETE."""
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session")
def cluster():
    """The cluster document."""
    return CLUSTER


@pytest.fixture(scope="session")
def mode(cluster):  # pylint: disable=redefined-outer-name
    """traditional, hybrid or dbless."""
    return cluster["mode"]


@pytest.fixture(scope="session")
def admin(cluster):  # pylint: disable=redefined-outer-name
    """The Admin API that takes writes: the control plane's in hybrid mode, else the first node's."""
    return Client(cluster.get("control_plane_admin_url") or cluster["admin_urls"][0])


@pytest.fixture(scope="session")
def admins(cluster):  # pylint: disable=redefined-outer-name
    """A client per Admin API (traditional/dbless: every node; hybrid: the control plane)."""
    return [Client(url) for url in cluster["admin_urls"]]


@pytest.fixture
def uname():
    """A unique entity name for this check."""
    return "cf-" + uuid.uuid4().hex[:10]


def wait_for(predicate, timeout, interval=0.05):
    """Call ``predicate`` until it returns a truthy value; return (value, seconds waited) or (None, timeout)."""
    started = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - started
        if value:
            return value, elapsed
        if elapsed > timeout:
            return None, elapsed
        time.sleep(interval)


TIMINGS = []


def record_timing(what, seconds):
    """Keep a measured duration for the run's summary (printed at the end of the pytest run)."""
    TIMINGS.append((what, seconds))


def pytest_terminal_summary(terminalreporter):
    """Print the cluster under test and the durations the timing checks measured."""
    if CLUSTER is None:
        return
    terminalreporter.write_sep("-", "conformance: %s engine, %s mode, %d node(s)" % (
        CLUSTER.get("engine", "real"), CLUSTER["mode"], len(CLUSTER.get("nodes") or [])))
    for what, seconds in TIMINGS:
        terminalreporter.write_line("timing: %s: %.2f s" % (what, seconds))
