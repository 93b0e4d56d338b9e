"""The package's version, in one place below every module that writes it into a file or a page."""

__version__ = "0.1.0"
