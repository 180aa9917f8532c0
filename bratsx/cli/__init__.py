"""Command-line interface: thin Typer commands that call library functions and render with Rich."""

from .app import app, main

__all__ = ["app", "main"]
