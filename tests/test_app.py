"""The page (utils.app), through gradio's own Python client, as a browser would call it."""
import numpy as np
import pytest
from PIL import Image



@pytest.fixture(scope="module")
def page(untrained_run):
    from utils.app import build_app
    from utils.predict import Predictor

    folder = untrained_run
    app = build_app(Predictor(folder))
    app.launch(prevent_thread_lock=True, quiet=True)
    yield app, folder
    app.close()


def test_the_page_answers_hashtags_top5_and_a_heatmap(page, tmp_path):
    from gradio_client import Client, handle_file

    app, _ = page
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photo)
    client = Client(app.local_url, verbose=False)
    tags, top, heat = client.predict(handle_file(str(photo)), "서울 성수동의 꽃게찜 맛집", api_name="/hashtags")
    assert tags.startswith("#") and len(tags.split()) >= 3
    assert len(top["confidences"]) == 5 and top["label"] == top["confidences"][0]["label"]
    assert Image.open(heat).size == (120, 90)  # the heatmap over the photo, at its size
    tags, _, heat = client.predict(None, "서울 성수동의 꽃게찜 맛집", api_name="/hashtags")
    assert tags.startswith("#") and heat is None  # text alone: no photo to explain


def test_the_page_says_what_is_wrong_with_an_input(page, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    app, _ = page
    client = Client(app.local_url, verbose=False)
    with pytest.raises(AppError, match="Give a description of the place, a photo, or both"):
        client.predict(None, "  ", api_name="/hashtags")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(AppError, match="The photo cannot be read"):
        client.predict(handle_file(str(broken)), "한식", api_name="/hashtags")
