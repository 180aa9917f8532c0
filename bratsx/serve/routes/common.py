"""What every router shares: the app state, as a dependency."""

from __future__ import annotations

from fastapi import Request

from ..state import AppState

__all__ = ["app_state"]


def app_state(request: Request) -> AppState:
    """The :class:`~bratsx.serve.state.AppState` the app was built with."""
    return request.app.state.bratsx
