"""A small dataset in the real Dacon layout written WITHOUT the project's generator (different classes,
texts, pictures, encodings), to check that the pipeline works on data it was not tuned on.

    python tests/foreign_data.py OUT_DIR [--train 600 --test 150] [--tree products] [--no-photo 0.33]

`--tree products` labels the rows with a product tree the Dacon data does not have, written to the folder's
own taxonomy.csv (one branch two levels deep, its names repeated; a name with a comma, quoted);
`--no-photo` leaves that share of the rows without a photo (empty img_path; 1 for a dataset with none).
"""
import argparse
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--tree", choices=["dacon", "products"], default="dacon")
    parser.add_argument("--no-photo", type=float, default=0.0, help="share of rows without a photo")
    args = parser.parse_args()
    print(write(Path(args.out), args.train, args.test, tree=args.tree, no_photo=args.no_photo))
    sys.exit(0)
