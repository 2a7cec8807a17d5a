"""Sphinx configuration: the pages are Markdown (MyST), the API reference comes
from the docstrings."""

project = "metatrain-pet"
author = "metatrain-pet developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
myst_heading_anchors = 3
