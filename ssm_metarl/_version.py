"""The package version, in a module of its own so that any module can read it without importing the package
root (and with it every model). pyproject.toml's ``version`` is the same string
(``tests/unit/test_package_version.py`` checks it)."""

__version__ = "0.2.0"
