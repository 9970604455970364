"""The README's picture of the page (utils.app) with a real prediction, taken in a headless Chromium.

Playwright drives Debian's chromium (`apt-get install chromium fonts-noto-cjk`: without a CJK font the Korean
text shows as boxes; no browser download). It is not in requirements.txt because only this script needs it:
`pip install playwright` into any environment.

    .venv/bin/python -m utils.app --run outputs/demo-generated-seed0 --port 7861 &
    python docs/screenshot_app.py --url http://127.0.0.1:7861 --data data/generated --row TEST_00000 --out docs/app.png
"""
import argparse
import csv
from pathlib import Path


def place(data_dir: Path, row_id: str) -> tuple[Path, str]:
    """The photo and overview of a test row of a dataset in the real layout."""
    with open(data_dir / "test.csv", encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["id"] == row_id:
                return data_dir / row["img_path"], row["overview"]
    raise SystemExit(f"{data_dir / 'test.csv'}: no row {row_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7861")
    parser.add_argument("--data", type=Path, default=Path("data/generated"))
    parser.add_argument("--row", default="TEST_00000")
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    photo, text = place(args.data, args.row)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.goto(args.url)
        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.get_by_label("Description (overview)").fill(text)
        page.get_by_role("button", name="Hashtags").click()
        page.get_by_label("Hashtags: category path, then keywords").and_(page.locator("textarea")).first.wait_for()
        page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => t.value.startsWith('#'))",
                               timeout=120_000)
        page.wait_for_timeout(1500)  # the heatmap image loads after the text
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out} ({args.row}: {text[:60]}...)")


if __name__ == "__main__":
    main()
