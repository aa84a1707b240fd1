"""The version, in a leaf module of its own: ``pyproject.toml`` reads it from here
(``[tool.setuptools.dynamic]``), the package root re-exports it, and the modules that
print it (the CLI's ``--version``, the engine's User-Agent) import it from here, never
from the root (which would import upward, and in a cycle once the root is eager)."""

__version__ = "0.3.0"
