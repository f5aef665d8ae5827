"""ripple: see what a knowledge edit to a language model breaks before you ship it.

Importing ``ripple`` is cheap and has no side effects; submodules load torch and
transformers only when used.
"""

__version__ = "0.1.0"
