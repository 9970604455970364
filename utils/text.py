"""Korean overview text: cleaning (the one place every model gets its text from) and morphemes."""
from __future__ import annotations

import html
import re
from contextlib import contextmanager
from functools import lru_cache

_TAG = re.compile(r"</?[A-Za-z][^<>]*>")  # HTML tags only: `<서울 명소>` is text
_SPACE = re.compile(r"\s+")


def clean_overview(text: str) -> str:
    """Strip HTML tags and entities and fold runs of whitespace; keeps notes such as `※ ...` as words."""
    text = _TAG.sub(" ", str(text))
    text = _TAG.sub(" ", html.unescape(html.unescape(text)))  # entities, some double-escaped, may hide tags
    text = text.replace("\xa0", " ")
    return _SPACE.sub(" ", text).strip()


KIWI_OPTIONS = {"load_multi_dict": False}  # what new runs analyse with, recorded in their predictor card
_ACTIVE = dict(KIWI_OPTIONS)


@lru_cache(maxsize=1)
def kiwi():
    """The offline Korean morphological analyser (model shipped by kiwipiepy-model), by default without its
    multi-word dictionary (WikiData names spanning spaces): loading it was 1.4 s of a predictor's 2.7 s for Kiwi,
    it slows every analysis by a quarter, and on the four datasets of docs/results.md not one analysis differs
    without it (on other text a name it would join stays, word by word, in the TF-IDF's words and characters)."""
    from kiwipiepy import Kiwi

    return Kiwi(**_ACTIVE)


def kiwi_options() -> dict:
    return dict(_ACTIVE)


def use_kiwi(options: dict) -> None:
    """Analyse with these Kiwi options from now on (a predictor card's: a run reads new text as it read its
    training text); analyses made with other options are forgotten."""
    if dict(options) != _ACTIVE:
        _ACTIVE.clear()
        _ACTIVE.update(options)
        kiwi.cache_clear()
        for cache in (_CONTENT_CACHE, _LENGTHS, _NOUNS, _DISK):
            cache.clear()


CONTENT_TAGS = ("NNG", "NNP", "VV", "VA", "SL", "XR", "SN")
NOUN_TAGS = ("NNG", "NNP")


def noun_compounds(tokens) -> list[str]:
    """Kiwi's nouns of one analysed text, runs of adjacent nouns joined as one compound as written
    (`카페거리`, `대청마루`), in order of appearance: the keyword model's candidates."""
    words, run, end = [], [], -1
    for token in tokens:
        if token.tag in NOUN_TAGS:
            if run and token.start != end:  # a space or punctuation between: a new word
                words.append("".join(run))
                run = []
            run.append(token.form)
            end = token.start + token.len
            continue
        if run:
            words.append("".join(run))
        run, end = [], -1
    if run:
        words.append("".join(run))
    return words


_CONTENT_CACHE: dict[str, list[str]] = {}
_LENGTHS: dict[str, int] = {}
_NOUNS: dict[str, list[str]] = {}
_DISK: dict[str, dict] = {}  # digest -> {"n": morphemes in all, "content": content morphemes, "nouns": compounds}


def _disk_path(cache_dir):
    import kiwipiepy
    from pathlib import Path

    options = "".join(f"-{k}{v}" for k, v in sorted(_ACTIVE.items()))
    return Path(cache_dir) / "morphemes" / f"analysis-kiwi{kiwipiepy.__version__}{options}.json"


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def prime_content_morphemes(texts, cache_dir=None) -> None:
    """Analyse many texts in one multi-threaded Kiwi call (2-3x faster than one by one) and keep them in memory
    and, given a `cache_dir`, on disk (<cache>/morphemes): 01's lengths, the TF-IDF of 02-06 and 06's keyword
    model share one analysis, and later notebooks skip it (10-15 s each, 14 s for the keywords on the bundled data)."""
    from .io import read_json, write_json

    if cache_dir is not None and not _DISK:
        _DISK.update(read_json(_disk_path(cache_dir), default={}))
    digests = {t: _digest(t) for t in texts if t not in _CONTENT_CACHE}
    for text, digest in digests.items():
        if "nouns" in _DISK.get(digest, {}):  # an entry written before nouns were kept is analysed again
            entry = _DISK[digest]
            _CONTENT_CACHE[text], _LENGTHS[text], _NOUNS[text] = entry["content"], entry["n"], entry["nouns"]
    todo = [t for t in digests if t not in _CONTENT_CACHE]
    if not todo:
        return
    for text, tokens in zip(todo, kiwi().tokenize([clean_overview(t) for t in todo])):
        _CONTENT_CACHE[text] = [t.form for t in tokens if t.tag.startswith(CONTENT_TAGS)]
        _LENGTHS[text] = len(tokens)
        _NOUNS[text] = noun_compounds(tokens)
        _DISK[digests[text]] = {"n": len(tokens), "content": _CONTENT_CACHE[text], "nouns": _NOUNS[text]}
    if cache_dir is not None and len(todo) > 1:
        write_json(_DISK, _disk_path(cache_dir))


@contextmanager
def analysed(texts):
    """The texts analysed in one multi-threaded Kiwi call for as long as the block runs (the TF-IDF members and the
    keywords read the same analysis), then forgotten: a catalogue's memory does not grow with its rows."""
    fresh = [t for t in dict.fromkeys(texts) if t not in _CONTENT_CACHE]
    digests = [d for d in map(_digest, fresh) if d not in _DISK]
    prime_content_morphemes(fresh)
    try:
        yield
    finally:
        for text in fresh:
            for cache in (_CONTENT_CACHE, _LENGTHS, _NOUNS):
                cache.pop(text, None)
        for digest in digests:
            _DISK.pop(digest, None)


def content_morphemes(text: str) -> list[str]:
    """Nouns, verb/adjective stems and foreign words: the tokens that carry a place's category."""
    if text not in _CONTENT_CACHE:
        prime_content_morphemes([text])
    return _CONTENT_CACHE[text]


def morpheme_lengths(texts, cache_dir=None) -> "np.ndarray":
    """Length of each cleaned overview in Kiwi morphemes (what a Korean reader would call words), from the
    analysis the TF-IDF models reuse."""
    import numpy as np

    texts = list(texts)
    prime_content_morphemes(texts, cache_dir)
    return np.array([_LENGTHS[t] for t in texts])


def noun_candidates(texts, cache_dir=None) -> list[list[str]]:
    """Each overview's noun compounds (`noun_compounds`), from the shared analysis."""
    texts = list(texts)
    prime_content_morphemes(texts, cache_dir)
    return [_NOUNS[t] for t in texts]
