"""Shared code of the hierarchical tourism-category pipeline; every notebook imports from here."""
import os

# albumentations phones home on import unless told not to; the pipeline must work offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
