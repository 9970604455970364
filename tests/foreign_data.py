"""A small dataset in the real Dacon layout written WITHOUT the project's generator (different classes,
texts, pictures, encodings), to check that the pipeline works on data it was not tuned on.

    python tests/foreign_data.py OUT_DIR [--train 600 --test 150]
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
FILLER = ["아름다운", "조용한", "넓은", "오래된", "가까운", "친절한", "유명한", "깨끗한"]


def write(out: Path, n_train: int = 600, n_test: int = 150, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    names = list(CLASSES)
    weights = np.array([30, 6, 5, 4, 10, 6, 3, 8, 6, 4], dtype=float)
    for split in ("train", "test"):
        (out / "image" / split).mkdir(parents=True, exist_ok=True)
    frames = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.choice(names, size=n, p=weights / weights.sum())
        rows = []
        for i, cat3 in enumerate(labels):
            cat1, cat2, words = CLASSES[cat3]
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
            if i % 50 == 3:
                img.save(path, "PNG")  # a PNG named .jpg, as found in real scraped data
            elif i % 50 == 7:
                img.convert("L").save(path, "JPEG")
            else:
                img.save(path, "JPEG", quality=80)
            rows.append({"id": rid, "img_path": f"./image/{split}/{rid}.jpg", "overview": overview,
                         "cat1": cat1, "cat2": cat2, "cat3": cat3})
        frames[split] = pd.DataFrame(rows)
    frames["train"].to_csv(out / "train.csv", index=False, encoding="cp949")
    frames["test"][["id", "img_path", "overview"]].to_csv(out / "test.csv", index=False, encoding="utf-8-sig")
    frames["test"][["id"]].assign(cat3="").to_csv(out / "sample_submission.csv", index=False)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=150)
    args = parser.parse_args()
    print(write(Path(args.out), args.train, args.test))
    sys.exit(0)
