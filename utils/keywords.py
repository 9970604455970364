"""Keyword hashtags: the few words of an overview that are specific to this place (#꽃게찜 #성수동).

Category hashtags say what kind of place it is; keywords say what is special about it. Candidates are Kiwi's
nouns, with neighbouring nouns joined into one compound as written (`카페거리`, `대청마루`); they are ranked by
TF-IDF against the corpus the keyword model was fitted on (a word every overview uses says nothing about one
of them). Dropped: the taxonomy's category names and the words of those names (they are the category
hashtags already), one-syllable words, stop words, and words in more than `max_df` of the overviews.
"""
from __future__ import annotations

import re

import numpy as np

from .text import noun_candidates

# Particles Kiwi can read as a noun's last syllable before a bracket (`장비이(가)`, `육상와(과)`): dropped from the
# end of a candidate whose stem the corpus also uses alone.
PARTICLES = tuple("와과을를이가은는의에도로")
# Words that describe any place: facilities, visiting, time; they never make a place findable.
STOP_WORDS = frozenset("""
곳 이곳 그곳 장소 위치 주변 근처 인근 지역 방문 방문객 관광객 여행객 여행 사람 이용 운영 시설 시간 영업시간
운영시간 휴무일 매주 문의 관리사무소 예약 필수 가능 주차 입장료 성인 어린이 현지 사정 변경 특징 인기 경험
분위기 서비스 사계절 가족 단위 연인 데이트 코스 대중교통 환경 일정 볼거리 사랑 주민 정도 이상 이하 모습
""".split())


def category_words(taxonomy) -> set[str]:
    """Every category name of the taxonomy, with and without spaces, and each word of it."""
    names = set()
    for level in ("cat1", "cat2", "cat3"):
        for name in taxonomy.classes(level):
            names.add(name.replace(" ", ""))
            names.update(w for w in re.split(r"[\s/,.()]+", name) if w)
    return names


class KeywordModel:
    """TF-IDF over noun candidates, fitted on a corpus of overviews; `keywords(texts, k)` per overview."""

    def __init__(self, taxonomy, max_df: float = 0.05):
        self.exclude = category_words(taxonomy) | STOP_WORDS
        self.max_df = max_df
        self.idf: dict[str, float] = {}

    def _filter(self, docs) -> list[list[str]]:
        known = self.vocabulary
        docs = [[w[:-1] if len(w) > 2 and w.endswith(PARTICLES) and w[:-1] in known else w for w in doc]
                for doc in docs]
        return [[w for w in doc if len(w) > 1 and w not in self.exclude and not w.isdigit()] for doc in docs]

    def fit(self, texts, cache_dir=None) -> "KeywordModel":
        """`cache_dir`: the run's cache, where 01 keeps its Kiwi analysis of every overview."""
        raw = noun_candidates(texts, cache_dir)
        self.vocabulary = {w for doc in raw for w in doc}  # every candidate as written, before any filter
        docs = self._filter(raw)
        counts: dict[str, int] = {}
        for doc in docs:
            for w in set(doc):
                counts[w] = counts.get(w, 0) + 1
        n = len(docs)
        self.idf = {w: float(np.log((1 + n) / (1 + c)) + 1) for w, c in counts.items() if c / n <= self.max_df}
        self.unseen_idf = float(np.log(1 + n) + 1)  # a word the corpus never used is as rare as can be
        self.generic = {w for w, c in counts.items() if c / n > self.max_df}
        return self

    def keywords(self, texts, k: int = 3) -> list[list[str]]:
        """Up to `k` keywords per overview, best first (ties: first appearance)."""
        out = []
        for doc in self._filter(noun_candidates(texts)):
            scores: dict[str, float] = {}
            for w in doc:
                if w not in self.generic:
                    scores[w] = scores.get(w, 0.0) + self.idf.get(w, self.unseen_idf)
            out.append(sorted(scores, key=lambda w: -scores[w])[:k])  # sorted() is stable: first seen first
        return out


def hashtags(path: tuple[str, str, str], keywords: list[str]) -> str:
    """`#cat1 #cat2 #cat3` followed by the keywords (spaces removed: a hashtag is one word); a name repeated by
    a shallower taxonomy (`의류,의류,티셔츠`) or by a keyword is tagged once."""
    tags = ["#" + w.replace(" ", "") for w in (*path, *keywords)]
    return " ".join(dict.fromkeys(tags))
