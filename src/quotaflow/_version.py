"""The package version, alone, so that low layers can read it without importing the face."""

__version__ = "0.1.0"
