"""imgarc: a folder archiver for photos built on a learned image codec."""

from imgarc import lean_imports as _lean_imports

__version__ = "0.2.0"

# Before anything imports compressai: skip its point-cloud stack (see lean_imports).
_lean_imports.install()
