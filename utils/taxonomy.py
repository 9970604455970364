"""The three label levels and the label tree: what models, metrics and the ensemble need to know of the labels,
without the CSV loading of utils/data.py."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a tree is built: the configuration reads the decode rules alone
    import pandas as pd

LEVELS = ("cat1", "cat2", "cat3")
DECODE_RULES = ("product", "sum")  # how the levels' probabilities choose a path of the tree: metrics.hierarchical_decode


@dataclass(frozen=True)
class Taxonomy:
    """The label tree. Encoders are sorted names, fitted on the tree, so all 128 cat3 always exist."""

    table: pd.DataFrame
    cat1: list[str] = field(init=False)
    cat2: list[str] = field(init=False)
    cat3: list[str] = field(init=False)

    def __post_init__(self):
        for level in LEVELS:
            object.__setattr__(self, level, sorted(self.table[level].unique()))

    @property
    def sizes(self) -> dict[str, int]:
        return {level: len(getattr(self, level)) for level in LEVELS}

    def classes(self, level: str) -> list[str]:
        return getattr(self, level)

    def encode(self, level: str, values) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes(level))}
        return np.array([index[v] for v in values], dtype=np.int64)

    def decode(self, level: str, codes) -> list[str]:
        names = self.classes(level)
        return [names[int(c)] for c in codes]

    def parent_of(self, child_level: str) -> np.ndarray:
        """For each class of `child_level` (cat2 or cat3), the index of its parent one level up."""
        parent_level = {"cat2": "cat1", "cat3": "cat2"}[child_level]
        pairs = self.table.drop_duplicates(child_level).set_index(child_level)[parent_level]
        return self.encode(parent_level, [pairs[c] for c in self.classes(child_level)])

    def path(self, cat3: str) -> tuple[str, str, str]:
        return (*self._paths[cat3], cat3)

    def is_path(self, cat1: str, cat2: str, cat3: str) -> bool:
        return cat3 in self._paths and self._paths[cat3] == (cat1, cat2)

    def records(self) -> list[list[str]]:
        """The tree as `[cat1, cat2, cat3]` rows, for a predictor that must not depend on the data folder."""
        return self.table[list(LEVELS)].values.tolist()

    @classmethod
    def from_records(cls, records) -> "Taxonomy":
        import pandas as pd

        return cls(pd.DataFrame(records, columns=list(LEVELS)))

    @cached_property
    def digest(self) -> str:
        """Changes with any class name or parent: a model trained under another tree is never reused."""
        return hashlib.sha1(repr(sorted(map(tuple, self.records()))).encode()).hexdigest()[:12]

    @cached_property
    def _paths(self) -> dict[str, tuple[str, str]]:
        """cat3 -> (cat1, cat2), built once: validation asks for every row."""
        return {r.cat3: (r.cat1, r.cat2) for r in self.table.itertuples()}
