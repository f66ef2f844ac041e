"""routeraudio: a self-hostable router for streaming speech-to-text."""

try:
    from ._version import version as __version__  # written by setuptools-scm at build time
except ImportError:  # running from a source tree that was never built
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
