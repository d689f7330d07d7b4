"""The package version, read statically by the build."""

__version__ = "0.1.0"
