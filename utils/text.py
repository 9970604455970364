"""Korean overview text: cleaning (the one place every model gets its text from) and morphemes."""
from __future__ import annotations

import html
import re
from functools import lru_cache

_TAG = re.compile(r"</?[A-Za-z][^<>]*>")  # HTML tags only: `<서울 명소>` is text
_SPACE = re.compile(r"\s+")


def clean_overview(text: str) -> str:
    """Strip HTML tags and entities and fold runs of whitespace; keeps notes such as `※ ...` as words."""
    text = _TAG.sub(" ", str(text))
    text = _TAG.sub(" ", html.unescape(html.unescape(text)))  # entities, some double-escaped, may hide tags
    text = text.replace("\xa0", " ")
    return _SPACE.sub(" ", text).strip()


@lru_cache(maxsize=1)
def kiwi():
    """The offline Korean morphological analyser (model shipped by kiwipiepy-model)."""
    from kiwipiepy import Kiwi

    return Kiwi()


def morphemes(texts, with_tags: bool = False) -> list[list[str]]:
    """Morphemes of each (cleaned) text; Kiwi batches internally."""
    texts = [clean_overview(t) for t in texts]
    out = []
    for tokens in kiwi().tokenize(texts):
        out.append([f"{t.form}/{t.tag}" if with_tags else t.form for t in tokens])
    return out


CONTENT_TAGS = ("NNG", "NNP", "VV", "VA", "SL", "XR", "SN")


def content_morphemes(text: str) -> list[str]:
    """Nouns, verb/adjective stems and foreign words: the tokens that carry a place's category."""
    return [f"{t.form}" for t in kiwi().tokenize(clean_overview(text)) if t.tag.startswith(CONTENT_TAGS)]


def morpheme_lengths(texts) -> "np.ndarray":
    """Length of each cleaned overview in Kiwi morphemes (what a Korean reader would call words)."""
    import numpy as np

    return np.array([len(tokens) for tokens in morphemes(texts)])
