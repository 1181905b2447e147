"""Modules Connexion imports at start that the service never uses while serving, kept out of the
start (on FaaS, import time is cold-start time). Called once, before connexion is imported.

- ``httpx._main``, httpx's command line (it pulls rich and pygments wherever they are installed):
  marked absent; httpx guards that import.
- ``requests`` and ``httpx``: connexion.json_schema imports requests to fetch remote ``$ref``s
  (openapi.yaml has none), connexion.security imports httpx for OAuth token introspection (no
  OAuth here). Each is a stand-in that imports the real module when an attribute is first used.
- ``starlette.testclient`` (and httpx with it): connexion.apps.abstract imports its TestClient for
  ``AbstractApp.test_client()``. While connexion is imported, a stand-in module offers a
  TestClient that imports the real one when it is called; the stand-in leaves sys.modules right
  after, so any later ``import starlette.testclient`` gets the real module.

Nothing changes for a process that imported any of them before.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_TEST_CLIENT = "starlette.testclient"


class _OnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute of it is asked for, then imports the real one
    (which takes its place in sys.modules) and hands its attributes out. An `import` of a module
    already in sys.modules reads only its __spec__, which is here without loading anything
    (importlib.util.LazyLoader loads on that read, on Python 3.11)."""

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)


def _on_first_use(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _OnFirstUse(name)
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in


class _TestClient:
    """What connexion binds as TestClient: the real one, imported when first asked for."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from starlette.testclient import TestClient

        return TestClient(*args, **kwargs)


@contextmanager
def _test_client_stand_in() -> Iterator[None]:
    if _TEST_CLIENT in sys.modules:
        yield
        return
    stand_in = types.ModuleType(_TEST_CLIENT)
    stand_in.TestClient = _TestClient  # type: ignore[attr-defined]
    sys.modules[_TEST_CLIENT] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_TEST_CLIENT) is stand_in:
            del sys.modules[_TEST_CLIENT]


def import_connexion() -> None:
    if "connexion" in sys.modules:
        return
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    _on_first_use("requests")
    _on_first_use("httpx")
    with _test_client_stand_in():
        import connexion  # noqa: F401
