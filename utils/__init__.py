"""Shared code of the hierarchical tourism-category pipeline; every notebook imports from here."""
import csv
import os

# albumentations phones home on import unless told not to; the pipeline must work offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Python's csv module refuses a field over 131,072 characters; a catalogue's overview can be longer, and every
# CSV reader of the project (training data, taxonomy, catalogue, plan) reads it whole instead.
csv.field_size_limit(2**31 - 1)
