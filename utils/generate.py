"""Generate the bundled dataset: GENERATED data in exactly the real Dacon layout, with ground truth.

The real contest data cannot be shipped, so the default run uses this. It is never real data:
every folder it writes carries a GENERATED.txt saying so. Design (docs/data.md):

* all 128 real cat3 under their real parents; class sizes are the real counts scaled down
  (at least 2 rows), so `한식` dominates and several classes have fewer rows than 5 folds;
* each cat2 is decided either by the picture or by the text: in an "image" cat2 the siblings
  differ by the object drawn in the photo while the overview only speaks of the cat2; in a
  "text" cat2 the photo shows one object shared by the siblings while the overview names the
  cat3 (vocabulary, often the class name). Either modality alone fails on half the tree;
* ground truth no training code reads, in `truth/`: test labels, the ~3% train labels that were
  deliberately corrupted, and for every image the box of the object that identifies its class.

Run: `python -m utils.generate --out data/generated --seed 0` (`--size tiny|default|full`).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from . import paths
from .data import load_taxonomy
from .io import atomic_path, write_csv
from .progress import bar

REAL_TRAIN_ROWS = 16986
REAL_TEST_ROWS = 7280
SIZES = {"tiny": (400, 100), "default": (4000, 1000), "full": (REAL_TRAIN_ROWS, REAL_TEST_ROWS),
         "second": (1334, 333)}
GENERATOR_VERSION = 1

# cat2 whose cat3 are told apart by the picture; every other cat2 is told apart by the text.
IMAGE_CAT2 = {"육상 레포츠", "수상 레포츠", "항공 레포츠", "복합 레포츠", "자연관광지", "관광자원",
              "역사관광지", "휴양관광지", "건축/조형물"}

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "bars", "arrow")
COLORS = ((220, 40, 40), (40, 170, 60), (40, 80, 220), (235, 200, 30), (200, 50, 200),
          (30, 200, 210), (245, 130, 20), (120, 60, 170), (250, 250, 250))
CAT1_BACKGROUND = {  # a hue per cat1, so the scene alone hints at the top level
    "레포츠": ((90, 140, 90), (170, 200, 150)), "쇼핑": ((150, 120, 100), (210, 190, 170)),
    "숙박": ((110, 100, 140), (190, 180, 210)), "음식": ((160, 110, 70), (230, 200, 160)),
    "인문(문화/예술/역사)": ((120, 120, 120), (200, 195, 185)), "자연": ((70, 120, 160), (160, 200, 230)),
}

REGIONS = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종", "경기도 가평군", "강원도 강릉시",
           "강원도 평창군", "충청북도 단양군", "충청남도 공주시", "전라북도 전주시", "전라남도 여수시",
           "경상북도 경주시", "경상남도 통영시", "제주특별자치도 서귀포시", "제주시 애월읍", "경기도 수원시"]
GENERIC = ["방문객들에게 인기가 많다", "주변 경관이 아름답다", "가족 단위 여행객이 즐겨 찾는다",
           "주차 시설을 갖추고 있다", "대중교통으로 쉽게 찾아갈 수 있다", "사계절 내내 많은 사람이 찾는다",
           "친절한 서비스로 유명하다", "지역 주민들의 사랑을 받고 있다", "여행 일정에 넣기 좋다",
           "근처에 볼거리가 많다", "깨끗하고 쾌적한 환경을 자랑한다", "연인들의 데이트 코스로도 좋다"]
NOTES = ["※ 영업시간 : 10:00~21:00", "※ 주차 가능", "※ 휴무일 : 매주 월요일", "※ 예약 필수",
         "※ 운영시간은 현지 사정에 따라 변경될 수 있음", "※ 문의 : 관리사무소", "※ 입장료 : 성인 3,000원"]
TEMPLATES = ["{w}(으)로 잘 알려진 곳이다.", "이곳에서는 {w}을(를) 즐길 수 있다.", "{w}와(과) {v}이(가) 특징이다.",
             "특히 {w}이(가) 유명하며 {g}.", "{w}을(를) 찾는 이들이 많고 {g}.", "{w} 분위기 속에서 {v}을(를) 경험할 수 있다."]
# Hand-written vocabulary for the classes that carry most of the weighted F1; the rest draw on
# words from their names plus class-specific coined words.
WORDS = json.loads(Path(__file__).with_name("generator_words.json").read_text(encoding="utf-8"))  # per style
CAT3_WORDS, CAT2_WORDS = WORDS["bundled"]["cat3"], WORDS["bundled"]["cat2"]
SYLLABLES = list("가나다라마바사아자차카타파하람솔빛누리온새들채움결담별숲잎강산바람구름달해")


@dataclass(frozen=True)
class Style:
    """How a generated dataset is made: words and sentence shapes, objects, colours and scenes, image sizes,
    noise. The bundled data is `Style()`; `SECOND` is a second development dataset made differently, so that a
    choice tuned on one of them shows when it does not hold on the other (docs/results.md)."""
    image_cat2: frozenset = frozenset(IMAGE_CAT2)
    shapes: tuple = SHAPES
    colors: tuple = COLORS
    backgrounds: dict = field(default_factory=lambda: CAT1_BACKGROUND)
    ramp: str = "vertical"              # the background's gradient: top to bottom, or left to right
    texture_std: float = 12.0
    width: tuple = (240, 420)           # image sizes, px
    height: tuple = (180, 360)
    object_radius: tuple = (0.16, 0.26)  # the class object's radius, share of the shorter side
    distractors: tuple = (2, 5)          # grey shapes that decide nothing
    grey: tuple = (90, 170)
    jpeg_quality: tuple = (75, 95)
    generic: tuple = tuple(GENERIC)
    notes: tuple = tuple(NOTES)
    templates: tuple = tuple(TEMPLATES)
    opening: str = "{place}{w2}은(는) {region}에 위치해 있다."
    naming: str = "{cat3} 전문으로 운영되는 곳이다."  # the sentence that names a text-decided cat3 outright
    naming_rate: float = 0.5
    sentences: tuple = (3, 6)
    joins: tuple = (" ", "<br>", "<br />\n", "\n", " &nbsp;")
    cat3_words: dict = field(default_factory=lambda: CAT3_WORDS)
    cat2_words: dict = field(default_factory=lambda: CAT2_WORDS)
    syllables: tuple = tuple(SYLLABLES)
    vocab_seed: int = 4321
    codes_seed: int = 1234
    vague: float = 0.15                 # text-decided rows whose text names only the cat2
    corrupt_rate: float = 0.03


SECOND = Style(
    image_cat2=frozenset({"육상 레포츠", "수상 레포츠", "자연관광지", "역사관광지", "쇼핑", "건축/조형물", "관광자원"}),
    shapes=("pentagon", "octagon", "ellipse", "frame", "pie", "dots", "tee", "chevron", "saltire", "kite"),
    colors=((150, 30, 60), (0, 110, 110), (255, 150, 190), (110, 100, 20), (20, 30, 120), (255, 80, 0),
            (150, 230, 80), (90, 50, 20), (10, 10, 10)),
    backgrounds={"레포츠": ((200, 210, 160), (120, 150, 80)), "쇼핑": ((230, 210, 230), (160, 130, 160)),
                 "숙박": ((210, 230, 240), (100, 130, 150)), "음식": ((250, 230, 200), (180, 150, 90)),
                 "인문(문화/예술/역사)": ((220, 200, 170), (140, 110, 90)), "자연": ((190, 230, 200), (60, 110, 90))},
    ramp="horizontal", texture_std=18.0, width=(320, 640), height=(280, 560), object_radius=(0.15, 0.25),
    distractors=(3, 7), grey=(60, 200), jpeg_quality=(60, 90),
    generic=("입구에서 안내 책자를 받을 수 있다", "아이와 함께 가기에 알맞다", "사진 찍기 좋은 장소가 많다",
             "평일에는 비교적 한산하다", "주말에는 붐비는 편이다", "인근에 묵을 곳이 있다", "접근성이 뛰어나다",
             "해질녘 풍경이 특히 좋다", "반려동물 동반이 가능하다", "재방문율이 높은 편이다"),
    notes=("☎ 문의처 : 031-000-0000", "◎ 이용시간 : 09:00~18:00", "◎ 쉬는날 : 연중무휴", "▶ 주차 : 공영주차장 이용",
           "※ 사전 예약 권장", "▶ 요금 : 무료"),
    templates=("{w} 하면 이곳을 빼놓을 수 없다.", "방문객은 {w}에 대해 높은 만족을 보인다.", "{g}. 무엇보다 {w}이(가) 인상적이다.",
               "{w}, {v} 모두 갖춘 명소.", "현지인 추천: {w}.", "{w}을(를) 중심으로 {v}까지 두루 살펴볼 수 있다.",
               "여기서는 {w} 체험이 가능하며, {g}."),
    opening="{region} 소재 {place}{w2}.", naming="이름 그대로 {cat3}을(를) 즐기는 곳.", naming_rate=0.4,
    sentences=(2, 5), joins=(" ", "<br/>", "<p>", "\r\n", " &amp; ", "<br>"),
    cat3_words=WORDS["second"]["cat3"], cat2_words=WORDS["second"]["cat2"],
    syllables=tuple("고도로모보소오조초코토포호글밀빈솜실윤은진한결푸른노을샘"),
    vocab_seed=8765, codes_seed=777, vague=0.2, corrupt_rate=0.05,
)
STYLES = {"second": SECOND}  # the style of a generated size; every other size is the bundled data's


def style_of(size: str) -> Style:
    return STYLES.get(size, Style())


def class_counts(taxonomy_table: pd.DataFrame, n_rows: int, minimum: int) -> np.ndarray:
    """Real counts scaled to `n_rows`, each class at least `minimum` (the real data's rare tail)."""
    real = taxonomy_table["count"].to_numpy(dtype=float)
    if n_rows == int(real.sum()):
        return real.astype(int)
    return np.maximum(minimum, np.round(real * n_rows / real.sum())).astype(int)


def visual_codes(taxonomy_table: pd.DataFrame, style: Style = Style()) -> dict[str, tuple[int, int]]:
    """(shape, colour) of the class-defining object: one per image-decided cat3, one per text cat2."""
    pairs = [(s, c) for s in range(len(style.shapes)) for c in range(len(style.colors))]
    order = np.random.default_rng(style.codes_seed).permutation(len(pairs))
    keys = [r.cat3 for r in taxonomy_table.itertuples() if r.cat2 in style.image_cat2]
    keys += sorted({"cat2:" + c for c in taxonomy_table["cat2"] if c not in style.image_cat2})
    if len(keys) > len(pairs):
        raise ValueError(f"{len(keys)} objects to tell apart but only {len(pairs)} shape and colour pairs")
    return {key: pairs[order[i]] for i, key in enumerate(keys)}


def object_key(cat2: str, cat3: str, style: Style = Style()) -> str:
    return cat3 if cat2 in style.image_cat2 else "cat2:" + cat2


def _coined(rng: np.random.Generator, n: int, syllables) -> list[str]:
    return ["".join(rng.choice(syllables, size=rng.integers(2, 4))) for _ in range(n)]


def _name_words(name: str) -> list[str]:
    for sep in "/,.()":
        name = name.replace(sep, " ")
    return [w for w in name.split() if len(w) > 1]


def vocabularies(taxonomy_table: pd.DataFrame, style: Style = Style()) -> dict[str, list[str]]:
    """Class-specific words for every cat1/cat2/cat3, fixed for the taxonomy and style (not per seed)."""
    rng = np.random.default_rng(style.vocab_seed)
    vocab = {}
    for level in ("cat1", "cat2", "cat3"):
        for name in sorted(taxonomy_table[level].unique()):
            hand = (style.cat3_words if level == "cat3" else style.cat2_words if level == "cat2" else {}).get(name, [])
            vocab[f"{level}:{name}"] = hand + _name_words(name) + _coined(rng, 4, style.syllables)
    return vocab


def _sentence(rng, words: list[str], others: list[str], style: Style) -> str:
    template = style.templates[rng.integers(len(style.templates))]
    return template.format(w=rng.choice(words), v=rng.choice(others), g=rng.choice(style.generic))


def write_overview(rng, cat1: str, cat2: str, cat3: str, vocab: dict, style: Style = Style()) -> str:
    """A Korean overview with the real data's noise: `<br>` tags, entities, newlines, `※` notes."""
    w1, w2, w3 = vocab[f"cat1:{cat1}"], vocab[f"cat2:{cat2}"], vocab[f"cat3:{cat3}"]
    place = "".join(rng.choice(style.syllables, size=2)) + rng.choice(["", " ", "마을 "])
    word2 = rng.choice(w2)
    sentences = [style.opening.format(place=place, w2=word2, region=rng.choice(REGIONS))]
    vague = rng.random() < style.vague
    by_image = cat2 in style.image_cat2
    for _ in range(rng.integers(*style.sentences)):
        if by_image:  # the text speaks of the cat2, rarely of the cat3
            words = w3 if rng.random() < 0.08 else (w2 if rng.random() < 0.75 else w1)
        else:
            words = w2 if vague or rng.random() < 0.3 else w3
        sentences.append(_sentence(rng, words, w2 + w1, style))
    if not by_image and not vague and rng.random() < style.naming_rate:
        sentences.insert(1, style.naming.format(cat3=cat3))
    if rng.random() < 0.3:
        sentences.append(f"&lt;{rng.choice(style.generic)}&gt;")
    if rng.random() < 0.5:
        sentences.append(rng.choice(style.notes))
    text = sentences[0]
    for s in sentences[1:]:
        text += style.joins[rng.integers(len(style.joins))] + s
    return text


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float):
    def polygon(n, radii):
        pts = []
        for i in range(n * len(radii)):
            a = angle + 2 * math.pi * i / (n * len(radii))
            rad = radii[i % len(radii)]
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts

    def turned(points):  # an outline in the square -1..1, turned by `angle` and scaled to lie within radius r
        c, s, k = math.cos(angle), math.sin(angle), r / math.sqrt(2)
        return [(cx + k * (x * c - y * s), cy + k * (x * s + y * c)) for x, y in points]

    return {"triangle": polygon(3, [r]), "diamond": polygon(4, [r]), "hexagon": polygon(6, [r]),
            "star": polygon(5, [r, r * 0.45]), "arrow": [(cx - r, cy - r * 0.35), (cx, cy - r * 0.35),
                                                          (cx, cy - r), (cx + r, cy), (cx, cy + r),
                                                          (cx, cy + r * 0.35), (cx - r, cy + r * 0.35)],
            "pentagon": polygon(5, [r]), "octagon": polygon(8, [r]), "kite": polygon(2, [r, r * 0.5]),
            "tee": turned([(-1, -1), (1, -1), (1, -0.5), (0.25, -0.5), (0.25, 1), (-0.25, 1), (-0.25, -0.5),
                           (-1, -0.5)]),
            "chevron": turned([(-1, -0.2), (0, -1), (1, -0.2), (1, 0.4), (0, -0.4), (-1, 0.4)])}.get(shape)


def draw_object(draw: ImageDraw.ImageDraw, shape: str, color, cx, cy, r, angle) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    points = _shape_points(shape, cx, cy, r, angle)
    if points:
        draw.polygon(points, fill=color, outline=(20, 20, 20))
    elif shape == "circle":
        draw.ellipse(box, fill=color, outline=(20, 20, 20))
    elif shape == "square":
        draw.rectangle((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=color, outline=(20, 20, 20))
    elif shape == "ring":
        draw.ellipse(box, outline=color, width=max(3, int(r * 0.35)))
    elif shape == "cross":
        draw.rectangle((cx - r, cy - r * 0.3, cx + r, cy + r * 0.3), fill=color)
        draw.rectangle((cx - r * 0.3, cy - r, cx + r * 0.3, cy + r), fill=color)
    elif shape == "bars":
        for k in range(4):
            y = cy - r + k * r / 2
            draw.rectangle((cx - r, y, cx + r, y + r / 4), fill=color)
    elif shape == "ellipse":
        draw.ellipse((cx - r, cy - r * 0.55, cx + r, cy + r * 0.55), fill=color, outline=(20, 20, 20))
    elif shape == "frame":
        draw.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), outline=color,
                       width=max(3, int(r * 0.3)))
    elif shape == "pie":
        start = math.degrees(angle)
        draw.pieslice(box, start, start + 270, fill=color, outline=(20, 20, 20))
    elif shape == "dots":
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                x, y = cx + i * r * 0.66, cy + j * r * 0.66
                draw.ellipse((x - r * 0.28, y - r * 0.28, x + r * 0.28, y + r * 0.28), fill=color)
    elif shape == "saltire":
        c, s = math.cos(angle + math.pi / 4), math.sin(angle + math.pi / 4)
        for dx, dy in ((c, s), (-s, c)):  # two bars at right angles
            draw.polygon([(cx + r * (dx * u - dy * v), cy + r * (dy * u + dx * v))
                          for u, v in ((-0.96, -0.25), (0.96, -0.25), (0.96, 0.25), (-0.96, 0.25))], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def noise_texture(rng, style: Style = Style()) -> np.ndarray:
    """One texture per dataset; every image takes a random crop of it (fast, still varied)."""
    side = max(512, style.width[1] + 1, style.height[1] + 1)
    return rng.normal(0, style.texture_std, size=(side, side, 3)).astype(np.float32)


def draw_image(rng, cat1: str, code: tuple[int, int], size: tuple[int, int], texture: np.ndarray,
               style: Style = Style()):
    """A scene: cat1-tinted gradient with texture and grey distractors, then the class object on top."""
    w, h = size
    top, bottom = (np.array(c, dtype=np.float32) for c in style.backgrounds[cat1])
    if style.ramp == "vertical":
        ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    else:
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    y, x = rng.integers(0, texture.shape[0] - h), rng.integers(0, texture.shape[1] - w)
    pixels = top * (1 - ramp) + bottom * ramp + texture[y:y + h, x:x + w]
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(*style.distractors)):  # distractors: shapes in grey, not class-defining
        r = rng.uniform(0.05, 0.1) * min(w, h)
        grey = int(rng.integers(*style.grey))
        draw_object(draw, style.shapes[rng.integers(len(style.shapes))], (grey, grey, grey),
                    rng.uniform(r, w - r), rng.uniform(r, h - r), r, rng.uniform(0, math.pi))
    r = rng.uniform(*style.object_radius) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    draw_object(draw, style.shapes[code[0]], style.colors[code[1]], cx, cy, r, rng.uniform(0, math.pi))
    box = (max(0, int(cx - r)), max(0, int(cy - r)), min(w, int(math.ceil(cx + r))), min(h, int(math.ceil(cy + r))))
    return img, box


def _rows(rng, labels: pd.DataFrame, prefix: str, split: str) -> pd.DataFrame:
    labels = labels.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    ids = [f"{prefix}_{i:05d}" for i in range(len(labels))]
    return labels.assign(id=ids, img_path=[f"./image/{split}/{i}.jpg" for i in ids])


def corrupt_labels(rng, train: pd.DataFrame, taxonomy_table: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Give ~`rate` of rows a wrong cat3 (a sibling where there is one), parents kept consistent."""
    n = int(round(rate * len(train)))
    chosen = np.sort(rng.choice(len(train), size=n, replace=False))
    siblings = taxonomy_table.groupby("cat2")["cat3"].apply(list).to_dict()
    all_cat3 = taxonomy_table["cat3"].tolist()
    records = []
    for i in chosen:
        true = train.at[i, "cat3"]
        pool = [c for c in siblings[train.at[i, "cat2"]] if c != true] or [c for c in all_cat3 if c != true]
        records.append({"id": train.at[i, "id"], "true_cat3": true, "given_cat3": pool[rng.integers(len(pool))]})
    return pd.DataFrame(records, columns=["id", "true_cat3", "given_cat3"])


def _write_tables(work: Path, train, test, noise, boxes: list, meta: dict) -> None:
    """The CSVs of the real layout, and the ground truth (truth/) that no training code reads."""
    write_csv(train[["id", "img_path", "overview", "cat1", "cat2", "cat3"]], work / "train.csv")
    write_csv(test[["id", "img_path", "overview"]], work / "test.csv")
    write_csv(test[["id"]].assign(cat3=""), work / "sample_submission.csv")
    write_csv(test[["id", "cat1", "cat2", "cat3"]], work / "truth/test_labels.csv")
    write_csv(noise, work / "truth/label_noise.csv")
    write_csv(pd.DataFrame(boxes), work / "truth/boxes.csv")
    with atomic_path(work / "truth/generation.json") as tmp:
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    (work / "GENERATED.txt").write_text(
        "GENERATED data, not the real Korea Tourism Organization / Dacon data.\n"
        f"Written by `python -m utils.generate` (seed {meta['seed']}, size {meta['size']}) in the real layout so that every\n"
        "code path meets the real schema. truth/ holds ground truth that no training code reads.\n",
        encoding="utf-8")


def generate_dataset(out_dir, seed: int = 0, size: str = "default", n_train: int | None = None,
                     n_test: int | None = None, corrupt_rate: float | None = None, progress: bool = True) -> Path:
    """Write a GENERATED dataset in the real layout to `out_dir` (replaced atomically) and return it; the size
    names its row counts and its style (`second`: the second development dataset, see `Style`)."""

    started = time.time()
    out_dir = Path(out_dir)
    default_train, default_test = SIZES[size]
    n_train, n_test = n_train or default_train, n_test or default_test
    style = style_of(size)
    corrupt_rate = style.corrupt_rate if corrupt_rate is None else corrupt_rate
    table = load_taxonomy().table
    rng = np.random.default_rng(seed)
    vocab, codes = vocabularies(table, style), visual_codes(table, style)
    texture = noise_texture(rng, style)

    train_labels = table.loc[table.index.repeat(class_counts(table, n_train, 2)), ["cat1", "cat2", "cat3"]]
    test_labels = table.loc[table.index.repeat(class_counts(table, n_test, 0)), ["cat1", "cat2", "cat3"]]
    train = _rows(rng, train_labels, "TRAIN", "train")
    test = _rows(rng, test_labels, "TEST", "test")

    work = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("image/train", "image/test", "truth"):
        (work / sub).mkdir(parents=True)
    boxes = []
    for split, frame in (("train", train), ("test", test)):
        overviews = []
        for row in bar(frame.itertuples(), total=len(frame), desc=f"generating {split}", disable=not progress):
            overviews.append(write_overview(rng, row.cat1, row.cat2, row.cat3, vocab, style))
            size_wh = (int(rng.integers(*style.width)), int(rng.integers(*style.height)))
            img, box = draw_image(rng, row.cat1, codes[object_key(row.cat2, row.cat3, style)], size_wh, texture,
                                  style)
            img.save(work / row.img_path, format="JPEG", quality=int(rng.integers(*style.jpeg_quality)))
            boxes.append({"id": row.id, "split": split, "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
                          "width": size_wh[0], "height": size_wh[1]})
        frame["overview"] = overviews

    noise = corrupt_labels(rng, train, table, corrupt_rate)
    given = train.set_index("id")
    parents = table.set_index("cat3")
    for rec in noise.itertuples():
        given.loc[rec.id, ["cat1", "cat2", "cat3"]] = [*parents.loc[rec.given_cat3, ["cat1", "cat2"]], rec.given_cat3]
    train = given.reset_index()

    meta = {"generated": True, "generator_version": GENERATOR_VERSION, "seed": seed, "size": size,
            "n_train": len(train), "n_test": len(test), "corrupted_labels": len(noise),
            "style": size if size in STYLES else "bundled", "image_decided_cat2": sorted(style.image_cat2)}
    _write_tables(work, train, test, noise, boxes, meta)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    if progress:
        print(f"generated {len(train)} train / {len(test)} test rows in {out_dir} in {time.time() - started:.1f}s")
    return out_dir


def ensure_dataset(out_dir=paths.BUNDLED_DATA_DIR, seed: int = 0, size: str = "default", **kwargs) -> Path:
    """Generate unless `out_dir` already holds this generator's output for the same seed and size."""
    meta_path = Path(out_dir) / "truth/generation.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if (meta.get("seed"), meta.get("size"), meta.get("generator_version")) == (seed, size, GENERATOR_VERSION):
            return Path(out_dir)
    return generate_dataset(out_dir, seed=seed, size=size, **kwargs)


def generate_catalogue(out_dir, rows: int, seed: int = 0, size: str = "default", photos: int = 500,
                       progress: bool = True) -> Path:
    """A catalogue to tag (GENERATED, the real test layout): `catalogue.csv` with `rows` places of the `size`'s
    style, their photos drawn from `photos` pictures that repeat (a catalogue's size is in its rows), and their
    labels in truth/catalogue_labels.csv. Written in one pass, a row at a time: 100,000 rows take seconds."""
    out_dir = Path(out_dir)
    style, table = style_of(size), load_taxonomy().table
    rng = np.random.default_rng(seed)
    vocab, codes = vocabularies(table, style), visual_codes(table, style)
    texture = noise_texture(rng, style)
    labels = table.loc[rng.choice(len(table), size=rows), ["cat1", "cat2", "cat3"]].reset_index(drop=True)
    (out_dir / "image/catalogue").mkdir(parents=True, exist_ok=True)
    (out_dir / "truth").mkdir(exist_ok=True)
    pictures = {}
    for number, key in enumerate(bar(table.index[rng.choice(len(table), size=photos)], desc="drawing photos",
                                     disable=not progress)):
        cat1, cat2, cat3 = table.loc[key, ["cat1", "cat2", "cat3"]]
        size_wh = (int(rng.integers(*style.width)), int(rng.integers(*style.height)))
        img, _ = draw_image(rng, cat1, codes[object_key(cat2, cat3, style)], size_wh, texture, style)
        name = f"./image/catalogue/PHOTO_{number:05d}.jpg"
        img.save(out_dir / name, format="JPEG", quality=int(rng.integers(*style.jpeg_quality)))
        pictures.setdefault(cat3, []).append(name)
    every = [name for names in pictures.values() for name in names]
    with atomic_path(out_dir / "catalogue.csv") as tmp, atomic_path(out_dir / "truth/catalogue_labels.csv") as truth:
        with open(tmp, "w", encoding="utf-8", newline="") as fh, open(truth, "w", encoding="utf-8", newline="") as th:
            places, labelled = csv.writer(fh, lineterminator="\n"), csv.writer(th, lineterminator="\n")
            places.writerow(["id", "img_path", "overview"])
            labelled.writerow(["id", "cat1", "cat2", "cat3"])
            for i, row in enumerate(bar(labels.itertuples(), total=rows, desc="writing places", disable=not progress)):
                own = pictures.get(row.cat3)  # the class's own photo where one was drawn, else any (a stock photo)
                photo = own[rng.integers(len(own))] if own else every[rng.integers(len(every))]
                rid = f"PLACE_{i:06d}"
                places.writerow([rid, photo, write_overview(rng, row.cat1, row.cat2, row.cat3, vocab, style)])
                labelled.writerow([rid, row.cat1, row.cat2, row.cat3])
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate the bundled dataset (GENERATED, real Dacon layout).")
    parser.add_argument("--out", default=str(paths.BUNDLED_DATA_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--force", action="store_true", help="regenerate even if the folder is up to date")
    parser.add_argument("--catalogue", type=int, default=0, metavar="ROWS",
                        help="instead: a catalogue of ROWS places to tag (catalogue.csv, photos repeating) in --out")
    args = parser.parse_args(argv)
    if args.catalogue:
        print(generate_catalogue(args.out, args.catalogue, seed=args.seed, size=args.size))
    elif args.force:
        generate_dataset(args.out, seed=args.seed, size=args.size)
    else:
        print(ensure_dataset(args.out, seed=args.seed, size=args.size))


if __name__ == "__main__":
    main()
