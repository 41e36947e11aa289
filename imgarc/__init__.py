"""imgarc: a folder archiver for photos built on a learned image codec."""

__version__ = "0.1.0"
