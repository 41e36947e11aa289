"""The `imgarc` command line (see imgarc/cli/app.py)."""

from imgarc.cli.app import app, main, run

__all__ = ["app", "main", "run"]
