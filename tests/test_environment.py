"""Colab and Kaggle set-up: what the platform's Python lacks, version ranges included."""
from utils.environment import unmet


def test_missing_and_too_old_requirements_are_listed_and_the_platforms_torch_is_left_alone(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("torch==0.1  # the platform's CUDA build stays\nnumpy>=1.0\nnumpy>=999\n"
                   "albumentations>=2.0,<1.0\nno-such-package-here>=1\n\n# a comment\n")
    assert unmet(req) == ["numpy>=999", "albumentations>=2.0,<1.0", "no-such-package-here>=1"]
