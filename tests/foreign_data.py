"""A small dataset in the real Dacon layout written WITHOUT the project's generator (different classes,
texts, pictures, encodings), to check that the pipeline works on data it was not tuned on.

    python tests/foreign_data.py OUT_DIR [--train 600 --test 150] [--tree products] [--no-photo 0.33]

`--tree products` labels the rows with a product tree the Dacon data does not have, written to the folder's
own taxonomy.csv (one branch two levels deep, its names repeated; a name with a comma, quoted);
`--no-photo` leaves that share of the rows without a photo (empty img_path; 1 for a dataset with none).

`--style mixed` writes harder data for comparisons with other tools (benchmarks/peer.py): 20 cat3 of the real
tree, each place's class said by its text, shown by its photo, or both (the text alone leaves half the rows, the
photo a quarter, to a guess among siblings), sibling words mixed into texts, distractor shapes in photos,
`--noise` of the training labels moved to a sibling, and ground truth in `truth/` as the project's own generated
data has it (test labels, the corrupted labels, the class-defining object's box in every photo), with which
modality shows each place's cat3. With `--no-photo`, a place without a photo has its class said by its text
(`--style mixed --no-photo 1`: text-only data, in which the text always says the cat3).
"""
import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

CLASSES = {  # cat3: (cat1, cat2, words); the picture pattern is per cat3 within each cat2
    "한식": ("음식", "음식점", ["김치", "국밥", "나물", "한상차림"]), "중식": ("음식", "음식점", ["짜장", "짬뽕", "만두", "볶음밥"]),
    "일식": ("음식", "음식점", ["스시", "우동", "덮밥", "회"]), "서양식": ("음식", "음식점", ["버거", "스테이크", "피자", "수프"]),
    "펜션": ("숙박", "숙박시설", ["독채", "바베큐장", "수영장"]), "모텔": ("숙박", "숙박시설", ["대실", "주차", "객실"]),
    "한옥스테이": ("숙박", "숙박시설", ["한옥", "마당", "온돌방"]), "산": ("자연", "자연관광지", ["등산로", "정상", "능선"]),
    "해수욕장": ("자연", "자연관광지", ["모래", "파도", "해변"]), "계곡": ("자연", "자연관광지", ["물놀이", "바위", "폭포"]),
}
PRODUCTS = {  # the same shape of data under another tree: cat3: (cat1, cat2, words)
    "티셔츠": ("패션", "의류", ["반팔", "면", "라운드넥"]), "청바지": ("패션", "의류", ["데님", "슬림핏", "워싱"]),
    "운동화": ("패션", "신발", ["러닝", "쿠션", "끈"]), "구두": ("패션", "신발", ["가죽", "굽", "정장"]),
    "노트북": ("디지털", "컴퓨터", ["램", "배터리", "화면"]), "모니터": ("디지털", "컴퓨터", ["인치", "주사율", "패널"]),
    "이어폰": ("디지털", "음향", ["무선", "노이즈캔슬링", "블루투스"]), "스피커": ("디지털", "음향", ["출력", "저음", "우퍼"]),
    "사과,배": ("식품", "식품", ["과즙", "당도", "제철"]), "쌀": ("식품", "식품", ["햅쌀", "도정", "밥맛"]),
}
MIXED = {  # cat2: (cat1, shared words, {cat3: words})
    "음식점": ("음식", ["메뉴", "맛집", "식사", "주문", "포장"], {
        "한식": ["김치찌개", "불고기", "비빔밥", "된장국"], "중식": ["짜장면", "짬뽕", "탕수육", "마라탕"],
        "일식": ["초밥", "라멘", "돈가스", "우동"], "서양식": ["파스타", "스테이크", "피자", "리조또"],
        "바/까페": ["커피", "라떼", "디저트", "케이크"]}),
    "숙박시설": ("숙박", ["객실", "체크인", "예약", "조식"], {
        "펜션": ["바비큐", "독채", "개별 수영장"], "모텔": ["대실", "무인 객실", "주차장"],
        "한옥스테이": ["한옥", "온돌방", "대청마루"], "게스트하우스": ["도미토리", "공용 주방", "여행자 라운지"]}),
    "자연관광지": ("자연", ["풍경", "산책", "사진 명소", "사계절"], {
        "산": ["등산로", "정상", "능선"], "해수욕장": ["백사장", "파도", "해변"], "계곡": ["물놀이", "바위", "맑은 물"],
        "폭포": ["물줄기", "절벽", "물보라"]}),
    "역사관광지": ("인문(문화/예술/역사)", ["역사", "문화재", "유래", "보존"], {
        "고궁": ["궁궐", "왕실", "전각"], "사찰": ["대웅전", "스님", "템플스테이"], "성": ["성곽", "성문", "옹성"]}),
    "육상 레포츠": ("레포츠", ["체험", "장비", "강습", "안전"], {
        "골프": ["그린", "라운딩", "티샷"], "자전거하이킹": ["자전거길", "라이딩", "대여소"],
        "야영장,오토캠핑장": ["캠핑", "텐트", "카라반"], "승마": ["말", "승마장", "기승"]}),
}
SHAPES = ["ellipse", "rectangle", "triangle", "cross", "diamond"]
SENTENCES = ["{a} 곳으로 {w} 이야기가 많습니다.", "{w} 때문에 찾는 사람이 {a} 편입니다.", "이곳은 {w}(으)로 알려진 {a} 장소입니다.",
             "{a} 분위기에서 {w}을(를) 즐길 수 있습니다.", "방문객들은 {w}에 대해 {a} 평을 남깁니다."]
FILLER = ["아름다운", "조용한", "넓은", "오래된", "가까운", "친절한", "유명한", "깨끗한"]


def write(out: Path, n_train: int = 600, n_test: int = 150, seed: int = 7, tree: str = "dacon",
          no_photo: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    classes = {"dacon": CLASSES, "products": PRODUCTS}[tree]
    names = list(classes)
    weights = np.array([30, 6, 5, 4, 10, 6, 3, 8, 6, 4], dtype=float)
    for split in ("train", "test"):
        (out / "image" / split).mkdir(parents=True, exist_ok=True)
    frames = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.choice(names, size=n, p=weights / weights.sum())
        rows = []
        for i, cat3 in enumerate(labels):
            cat1, cat2, words = classes[cat3]
            rid = f"{split.upper()}_{i:05d}"
            text_words = [str(rng.choice(words)) if rng.random() < 0.5 else str(rng.choice(FILLER)) for _ in range(8)]
            overview = f"{' '.join(text_words)} 곳입니다.\n{cat2} 안내 ※ 문의 바람"
            k = names.index(cat3)
            img = Image.new("RGB", (int(rng.integers(200, 500)), int(rng.integers(150, 400))),
                            tuple(int(v) for v in rng.integers(0, 255, 3)))
            draw = ImageDraw.Draw(img)
            for j in range(2 + k % 4):  # stripes: count by class, colour by cat2
                x = int(rng.integers(0, img.width - 20))
                draw.rectangle((x, 0, x + 12, img.height), fill=(60 * (names.index(cat3) // 4), 200, 40 * (k % 4)))
            path = out / "image" / split / f"{rid}.jpg"
            photo = no_photo <= 0 or rng.random() >= no_photo  # no draw by default: the same data as before
            if not photo:
                pass
            elif i % 50 == 3:
                img.save(path, "PNG")  # a PNG named .jpg, as found in real scraped data
            elif i % 50 == 7:
                img.convert("L").save(path, "JPEG")
            else:
                img.save(path, "JPEG", quality=80)
            rows.append({"id": rid, "img_path": f"./image/{split}/{rid}.jpg" if photo else "", "overview": overview,
                         "cat1": cat1, "cat2": cat2, "cat3": cat3})
        frames[split] = pd.DataFrame(rows)
    frames["train"].to_csv(out / "train.csv", index=False, encoding="cp949")
    frames["test"][["id", "img_path", "overview"]].to_csv(out / "test.csv", index=False, encoding="utf-8-sig")
    frames["test"][["id"]].assign(cat3="").to_csv(out / "sample_submission.csv", index=False)
    if tree != "dacon":
        pd.DataFrame([(c1, c2, c3) for c3, (c1, c2, _) in classes.items()], columns=["cat1", "cat2", "cat3"]).to_csv(
            out / "taxonomy.csv", index=False)
    return out


PASSING = 0.3  # the chance that a mixed overview names a sibling's word in passing


def _mixed_tree() -> list[tuple]:
    """(cat1, cat2, cat3, words, shared words) of every cat3 of the mixed data, in the generator's order."""
    return [(c1, c2, c3, words, shared) for c2, (c1, shared, kids) in MIXED.items() for c3, words in kids.items()]


def write_mixed(out: Path, n_train: int = 1600, n_test: int = 500, seed: int = 11, noise: float = 0.03,
                said: float = 0.5, shown: float = 0.5, no_photo: float = 0.0) -> Path:
    """Each place's cat3 is said by its text with probability `said` and shown by its photo with `shown` (at least
    one of the two); the other modality then names only the cat2 (its shared words, its shape). A place left
    without a photo (`no_photo` of them) has its cat3 said by its text: `no_photo=1` is text-only data."""
    rng = np.random.default_rng(seed)
    tree = _mixed_tree()
    weights = rng.pareto(1.2, len(tree)) + 0.3
    for split in ("train", "test"):
        (out / "image" / split).mkdir(parents=True, exist_ok=True)
    frames, boxes, evidence = {}, [], []
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i, k in enumerate(rng.choice(len(tree), size=n, p=weights / weights.sum())):
            cat1, cat2, cat3, words, shared = tree[k]
            siblings = [t for t in tree if t[1] == cat2]
            rid = f"{split.upper()}_{i:05d}"
            photo = no_photo <= 0 or rng.random() >= no_photo  # no draw by default: the same data as before
            says = rng.random() < said or not photo
            shows = photo and (rng.random() < shown or not says)
            pool = list(shared) + (list(words) * 2 if says else [])
            if rng.random() < PASSING:  # a sibling's word in passing, as real overviews compare
                pool.append(str(rng.choice(siblings[int(rng.integers(len(siblings)))][3])))
            overview = " ".join(rng.choice(SENTENCES).format(w=str(rng.choice(pool)), a=str(rng.choice(FILLER)))
                                for _ in range(int(rng.integers(2, 6))))
            rows.append({"id": rid, "img_path": f"./image/{split}/{rid}.jpg" if photo else "",
                         "overview": overview + f"<br>※ {cat2} 문의", "cat1": cat1, "cat2": cat2, "cat3": cat3})
            if photo:
                box = _mixed_photo(rng, out / "image" / split / f"{rid}.jpg",
                                   siblings.index(tree[k]) if shows else -1, list(MIXED).index(cat2))
                boxes.append({"id": rid, "split": split, **box})
            evidence.append({"id": rid, "text_says_cat3": says, "photo_shows_cat3": shows})
        frames[split] = pd.DataFrame(rows)
    train = frames["train"]
    noisy = rng.choice(len(train), size=int(round(noise * len(train))), replace=False)
    noise_rows = []
    for i in sorted(noisy):
        true = train.at[i, "cat3"]
        options = [t for t in tree if t[1] == train.at[i, "cat2"] and t[2] != true]
        c1, c2, c3 = options[int(rng.integers(len(options)))][:3]
        train.loc[i, ["cat1", "cat2", "cat3"]] = [c1, c2, c3]
        noise_rows.append({"id": train.at[i, "id"], "true_cat3": true, "given_cat3": c3})
    train.to_csv(out / "train.csv", index=False, encoding="utf-8")
    frames["test"][["id", "img_path", "overview"]].to_csv(out / "test.csv", index=False, encoding="utf-8")
    frames["test"][["id"]].assign(cat3="").to_csv(out / "sample_submission.csv", index=False)
    (out / "truth").mkdir(exist_ok=True)
    frames["test"][["id", "cat1", "cat2", "cat3"]].to_csv(out / "truth" / "test_labels.csv", index=False)
    pd.DataFrame(noise_rows, columns=["id", "true_cat3", "given_cat3"]).to_csv(out / "truth" / "label_noise.csv",
                                                                               index=False)
    pd.DataFrame(boxes, columns=["id", "split", "x0", "y0", "x1", "y1", "width", "height"]).to_csv(
        out / "truth" / "boxes.csv", index=False)
    pd.DataFrame(evidence).to_csv(out / "truth" / "evidence.csv", index=False)
    return out


_ADJECTIVE = f"(?:{'|'.join(FILLER)})"
_SENTENCE = re.compile("|".join(  # each template, its word a named group, its adjective one of FILLER
    "(?:" + re.escape(t).replace(re.escape("{w}"), f"(?P<w{i}>.+?)").replace(re.escape("{a}"), _ADJECTIVE) + ")"
    for i, t in enumerate(SENTENCES)))


def mixed_words(overview: str) -> tuple[list[str], str]:
    """The drawn words and the cat2 of a mixed overview, read back through its sentence templates."""
    body, _, tail = overview.partition("<br>※ ")
    words = []
    for sentence in re.split(r"(?<=니다\.) ", body):
        match = _SENTENCE.fullmatch(sentence)
        if match is None:
            raise ValueError(f"not a sentence of the mixed generator: {sentence!r}")
        words.append(next(v for v in match.groupdict().values() if v is not None))
    return words, tail.removesuffix(" 문의")


def mixed_prior(cat2: str, seed: int = 11) -> dict[str, float]:
    """P(cat3 | cat2) of the mixed generator (`write_mixed` with the same seed): its class weights among siblings."""
    tree = _mixed_tree()
    weights = np.random.default_rng(seed).pareto(1.2, len(tree)) + 0.3
    kids = {t[2]: weights[i] for i, t in enumerate(tree) if t[1] == cat2}
    if not kids:
        raise ValueError(f"cat2 {cat2!r} is not in the mixed tree")
    total = sum(kids.values())
    return {k: v / total for k, v in kids.items()}


def mixed_posterior(overview: str, shape: str | None, seed: int = 11, said: float = 0.5,
                    shown: float = 0.5) -> dict[str, float]:
    """P(cat3 | overview, photo) under the mixed generator's own model and class weights (`write_mixed` with the
    same seed): what the best possible classifier knows. `shape`: the photo's object (one of SHAPES, "star" for
    the ring of a photo that shows no cat3), "unseen" for a photo not looked at, None for a place without one."""
    words, cat2 = mixed_words(overview)
    prior = mixed_prior(cat2, seed)
    siblings = [t for t in _mixed_tree() if t[1] == cat2]

    def text_likelihood(pool):
        plain = np.prod([pool.count(w) / len(pool) for w in words])
        passing = np.mean([np.mean([np.prod([(pool + [s]).count(w) / (len(pool) + 1) for w in words])
                                    for s in sib[3]]) for sib in siblings])
        return (1 - PASSING) * plain + PASSING * passing

    scores = {}
    for index, (_, _, cat3, own, shared) in enumerate(siblings):
        saying, silent = text_likelihood(list(shared) + list(own) * 2), text_likelihood(list(shared))
        if shape is None:
            evidence = saying
        elif shape == "unseen":
            evidence = said * saying + (1 - said) * silent
        else:
            showing = float(shape == SHAPES[index])
            evidence = (said * shown * saying * showing + said * (1 - shown) * saying * float(shape == "star")
                        + (1 - said) * silent * showing)
        scores[cat3] = prior[cat3] * evidence
    total = sum(scores.values())
    if total == 0:
        raise ValueError(f"the mixed generator cannot have drawn this place (photo {shape!r}): {overview!r}")
    return {k: v / total for k, v in scores.items()}


def _mixed_photo(rng, path: Path, sibling: int, family: int) -> dict:
    """A cluttered photo with one object: the cat2's colour; its shape the cat3's (or, when the photo does not
    show the class, a shape of no class); distractor shapes in other colours. Returns the object's box."""
    w, h = int(rng.integers(240, 480)), int(rng.integers(200, 400))
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(90, 200, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        x, y, s = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(10, 40))
        draw.rectangle((x, y, x + s, y + s // 2), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    size = int(min(w, h) * rng.uniform(0.25, 0.4))
    x0, y0 = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
    box = (x0, y0, x0 + size, y0 + size)
    colour = [(200, 40, 40), (40, 60, 200), (30, 150, 60), (120, 60, 20), (220, 200, 30)][family]
    _shape(draw, SHAPES[sibling] if sibling >= 0 else "star", box, colour)
    img.save(path, "JPEG", quality=85)
    return {"x0": x0, "y0": y0, "x1": box[2], "y1": box[3], "width": w, "height": h}


def _shape(draw, shape: str, box, colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle((x0, y0 + (y1 - y0) // 4, x1, y1 - (y1 - y0) // 4), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "cross":
        t = (x1 - x0) // 6
        draw.rectangle((cx - t, y0, cx + t, y1), fill=colour)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=colour)
    else:  # a ring: an object of the cat2 that shows no cat3
        draw.ellipse(box, fill=colour)
        draw.ellipse((x0 + (x1 - x0) // 4, y0 + (y1 - y0) // 4, x1 - (x1 - x0) // 4, y1 - (y1 - y0) // 4),
                     fill=(255, 255, 255))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--tree", choices=["dacon", "products"], default="dacon")
    parser.add_argument("--no-photo", type=float, default=0.0, help="share of rows without a photo")
    parser.add_argument("--style", choices=["simple", "mixed"], default="simple",
                        help="mixed: harder data with ground truth (module docstring)")
    parser.add_argument("--noise", type=float, default=0.03, help="mixed: share of training labels corrupted")
    args = parser.parse_args()
    if args.style == "mixed":
        print(write_mixed(Path(args.out), args.train, args.test, noise=args.noise, no_photo=args.no_photo))
    else:
        print(write(Path(args.out), args.train, args.test, tree=args.tree, no_photo=args.no_photo))
    sys.exit(0)
