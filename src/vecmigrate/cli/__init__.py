"""Command-line interface: thin Typer commands over the Python API."""

from vecmigrate.cli.app import app, main

__all__ = ["app", "main"]
