"""Splits, metrics, label fixing, ensembling and Grad-CAM helpers on small known inputs."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from utils import baselines, gradcam, labelfix
from utils.backbones import frozen_backbone
from utils.config import ConfigError, build
from utils.data import load_dataset, load_taxonomy
from utils.ensemble import (adopted_copies, adopted_imbalance, blend, choose_members, ensemble_weights, fit_weights,
                            member_overrides,
                            takes_copies)
from utils.io import read_json
from utils.metrics import evaluate, hierarchical_decode, lift_probs, record
from utils.splits import kfold, stratified_sample, stratified_split

TAX = load_taxonomy()


def test_kfold_spreads_classes_smaller_than_the_folds():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 2 + [3] * 3)
    folds = kfold(labels, 5, seed=0)
    assert np.bincount(folds).min() >= 15
    for rare in (2, 3):
        assert len(set(folds[labels == rare])) == (labels == rare).sum()  # each row in a different fold


@pytest.mark.parametrize("n_rows, n", [(4010, 4000), (8000, 3000), (8000, 50), (300, 4000)])
def test_a_study_sample_keeps_each_class_share_at_any_size(n_rows, n):
    """03's bounded sample: exactly min(n, rows) distinct rows, each class within one row of its share, seeded;
    also just above the bound and below the number of classes (128), where sklearn's stratified split refuses."""
    labels = np.random.default_rng(0).integers(0, 128, n_rows)
    rows = np.arange(n_rows)
    sample = stratified_sample(rows, labels, n, seed=0)
    assert len(sample) == len(set(sample)) == min(n, n_rows) and np.array_equal(sample, np.sort(sample))
    share = np.bincount(labels, minlength=128) * min(n, n_rows) / n_rows
    assert np.all(np.abs(np.bincount(labels[sample], minlength=128) - share) < 1 + 1e-9)
    assert np.array_equal(sample, stratified_sample(rows, labels, n, seed=0))


def test_validation_split_follows_its_seed(tiny_data):
    ds = load_dataset(tiny_data, progress=False, check_images=False)
    first = stratified_split(ds.train["id"], ds.train["cat3"], seed=0)
    assert first.equals(stratified_split(ds.train["id"], ds.train["cat3"], seed=0))
    assert not first.equals(stratified_split(ds.train["id"], ds.train["cat3"], seed=1))
    assert 0.15 < (first["split"] == "val").mean() < 0.25


def test_hierarchical_decoding_gives_a_consistent_path():
    rng = np.random.default_rng(0)
    probs = {level: rng.dirichlet(np.ones(n), size=50) for level, n in TAX.sizes.items()}
    path = hierarchical_decode(probs, TAX)
    assert (TAX.parent_of("cat3")[path["cat3"]] == path["cat2"]).all()
    assert (TAX.parent_of("cat2")[path["cat2"]] == path["cat1"]).all()
    one_hot = np.eye(128)[[TAX.cat3.index("한식")]]
    lifted = lift_probs(one_hot, TAX)
    assert TAX.cat2[lifted["cat2"].argmax()] == "음식점" and TAX.cat1[lifted["cat1"].argmax()] == "음식"
    y = {k: v for k, v in hierarchical_decode(probs, TAX).items()}
    assert evaluate(probs, y, TAX)["hierarchical"]["weighted_f1_cat3"] == 1.0


def test_record_merges_into_metrics_json(tmp_path):
    record("a", {"score": 1.0}, {"x": 1}, tmp_path)
    record("b", {"score": 2.0}, None, tmp_path)
    metrics = read_json(tmp_path / "metrics.json")
    assert set(metrics["models"]) == {"a", "b"} and metrics["models"]["a"]["config"] == {"x": 1}


def _restaurants(p_a_hansik: float):
    """Three restaurants: A (서양식) whose text says 한식, B (서양식), C (the only 한식 row); and out-of-fold
    probabilities giving A `p_a_hansik` for 한식, B 0.9 for its own label and C 0.99 for 중식."""
    train = pd.DataFrame({"id": ["A", "B", "C"], "overview": ["정통 한식 전문 식당", "파스타 서양식 레스토랑", "그냥 식당"],
                          "cat1": ["음식"] * 3, "cat2": ["음식점"] * 3, "cat3": ["서양식", "서양식", "한식"]})
    p = np.full((3, 128), 1e-4)
    p[0, TAX.cat3.index("한식")] = p_a_hansik
    p[1, TAX.cat3.index("서양식")] = 0.9
    p[2, TAX.cat3.index("중식")] = 0.99
    return train, TAX.encode("cat3", train["cat3"]), p / p.sum(1, keepdims=True)


def test_text_evidence_and_suspects():
    train, given, p = _restaurants(0.6)
    evidence = labelfix.text_evidence(train, TAX)
    assert list(evidence["id"]) == ["A"] and evidence["named_cat3"].iloc[0] == "한식"
    suspects = labelfix.find_suspects(train["id"], given, p, evidence, TAX, max_probability=0.002,
                                      min_class_rows=1)
    assert list(suspects["id"]) == ["C", "A"]
    assert dict(zip(suspects["id"], suspects["suggested_cat3"])) == {"C": "중식", "A": "한식"}
    fixes = labelfix.fixes_from_suspects(suspects, train, TAX, "test")
    assert set(fixes["field"]) == {"cat3"} and len(fixes) == 2


def test_a_label_the_experts_rule_out_is_suspect_even_when_they_are_unsure_which_class_is_right():
    """B's experts split between two other classes and give its label 0.001: flagged, suggesting the likelier one.
    C's experts are sure of 중식 yet still give its label 0.05: not flagged (a sure wrong class is not enough)."""
    train, given, _ = _restaurants(0.6)
    p = np.full((3, 128), 1e-6)
    p[0, given[0]] = 0.9
    p[1, [TAX.cat3.index("한식"), TAX.cat3.index("중식"), given[1]]] = [0.5, 0.499, 0.001]
    p[2, [TAX.cat3.index("중식"), given[2]]] = [0.95, 0.05]
    suspects = labelfix.find_suspects(train["id"], given, p, labelfix.text_evidence(train, TAX).iloc[:0], TAX, 0.002, 1)
    assert list(suspects["id"]) == ["B"] and suspects["suggested_cat3"].iloc[0] == "한식"
    with pytest.raises(ConfigError, match="label_experts"):
        build("demo", {"label_experts": "text_tfidf,no_such_model"}).label_expert_kinds


def test_a_class_too_rare_to_learn_is_contradicted_on_text_evidence_only():
    """C is the only 한식 row: out of fold, no expert saw a 한식 row, so their confident 중식 is no evidence.
    A (서양식, two rows) is below three rows too, but its text names 한식, which still flags it."""
    train, given, p = _restaurants(0.99)
    evidence = labelfix.text_evidence(train, TAX)
    by_rule = {rows: list(labelfix.find_suspects(train["id"], given, p, evidence, TAX, 0.002, rows)["id"])
               for rows in (1, 2, 3)}
    assert by_rule == {1: ["A", "C"], 2: ["A"], 3: ["A"]}
    no_text = labelfix.find_suspects(train["id"], given, p, evidence.iloc[:0], TAX, 0.002, 3)
    assert no_text.empty


def test_a_class_name_that_other_classes_say_too_is_no_evidence():
    """`전시관` said by five museum rows and one 전시관 row is an ordinary word here: naming it is not evidence
    against the museums' labels; a name said once (as above) still is."""
    texts = ["유물 전시관 관람"] * 5 + ["전시관 안내", "정통 한식 전문 식당"]
    labels = ["박물관"] * 5 + ["전시관", "서양식"]
    parents = TAX.table.set_index("cat3")
    train = pd.DataFrame({"id": [f"R{i}" for i in range(7)], "overview": texts, "cat3": labels,
                          "cat1": parents.loc[labels, "cat1"].to_numpy(), "cat2": parents.loc[labels, "cat2"].to_numpy()})
    common = labelfix.common_names(train, TAX)
    assert set(common) == {"전시관"} and common["전시관"] == (6, pytest.approx(1 / 6))
    assert set(labelfix.text_evidence(train, TAX)["id"]) == {"R0", "R1", "R2", "R3", "R4", "R6"}
    assert list(labelfix.text_evidence(train, TAX, ignore=common)["id"]) == ["R6"]


def test_product_of_experts_sharpens_agreeing_experts():
    labels = np.array([0, 1, 2, 0])
    a = np.array([[0.6, 0.3, 0.1]] * 4)
    b = np.array([[0.7, 0.2, 0.1]] * 4)
    p = labelfix.product_of_experts([a, b], labels, 3)
    assert p[0, 0] > max(a[0, 0], b[0, 0])


def test_ensemble_weights_prefer_the_better_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 128, 300)
    good = np.full((300, 128), 0.2 / 127)
    good[np.arange(300), y] = 0.8
    bad = rng.dirichlet(np.ones(128), size=300)
    members = [{"cat3": bad}, {"cat3": good}]
    w = fit_weights(members, y)
    assert w.sum() == pytest.approx(1) and w[1] > 0.8
    assert blend(members, w)["cat3"].shape == (300, 128)


def test_the_ensemble_is_its_best_member_alone_where_the_log_loss_blend_scores_lower():
    """A member always right but unsure, beside one sure and wrong on a fifth of the rows: log loss weights the
    sure one, whose mistakes then win the blend; the better member alone is kept instead. Where the blend is the
    better, its weights stand."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 128, 300)
    unsure = np.full((300, 128), 0.7 / 127)
    unsure[np.arange(300), y] = 0.3
    wrong = rng.random(300) < 0.2
    sure = np.full((300, 128), 0.01 / 126)
    sure[np.arange(300), y] = np.where(wrong, 0.4, 0.99)
    sure[np.arange(300), (y + 1) % 128] = np.where(wrong, 0.59, 0.01 / 126)
    members = [lift_probs(p, TAX) for p in (unsure, sure)]
    assert fit_weights(members, y)[1] > 0.5
    assert ensemble_weights(members, y, TAX).tolist() == [1.0, 0.0]
    good = np.full((300, 128), 0.2 / 127)
    good[np.arange(300), y] = 0.8
    members = [lift_probs(p, TAX) for p in (good, sure)]
    assert np.array_equal(ensemble_weights(members, y, TAX), fit_weights(members, y))


def test_vit_grid_comes_from_patch_and_input_size():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=384, patch_size=32)
    tokens = vit.forward_features(torch.randn(1, 3, 384, 384))
    grid = gradcam.vit_reshape_transform(vit, 384)(tokens)
    assert grid.shape[2:] == (12, 12)  # ViT-*/32 at 384 px, as ViT-L/32 in the contest
    with pytest.raises(ValueError):
        gradcam.vit_reshape_transform(vit, 224)(tokens)


def test_every_candidate_layer_and_method_gives_maps_at_input_size():
    from utils.models import build_model

    model = build_model("image_frozen", build("tiny"), {"cat1": 6, "cat2": 18, "cat3": 128})
    pixels = torch.randn(3, 3, 64, 64)
    for layer in gradcam.candidate_layers(model):
        for method in gradcam.METHODS:
            maps, preds = gradcam.explain(model, pixels, layer=layer, method=method, batch_size=2)
            assert maps.shape == (3, 64, 64) and preds.shape == (3,) and np.isfinite(maps).all()
    boxes = np.array([[0, 0, 64, 64]] * 3)
    table = gradcam.compare_explainers(model, pixels, boxes, [(64, 64)] * 3)
    assert len(table) == 9 and (table["peak inside object"] == 1.0).all()  # every peak is inside a full-image box
    assert table["drop at peak"].is_monotonic_decreasing and np.isfinite(table["drop at peak"]).all()
    assert "peak inside object" not in gradcam.compare_explainers(model, pixels, None, [(64, 64)] * 3)
    with pytest.raises(ValueError, match="unknown layer"):
        gradcam.heatmaps(model, pixels, layer="block -1")


def test_explaining_a_model_in_training_mode_leaves_the_shared_frozen_encoder_as_it_was():
    """Grad-CAM runs in eval mode from its first forward: in training mode batch norm would move the running
    statistics of the frozen encoder every model of the process shares (the predictor's included)."""
    from utils.backbones import loaded_frozen
    from utils.models import build_model

    cfg = build("tiny")
    model = build_model("image_frozen", cfg, {"cat1": 6, "cat2": 18, "cat3": 128})  # as built: training mode
    encoder = loaded_frozen("image", cfg).model
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    gradcam.explain(model, torch.randn(3, 3, 64, 64), batch_size=2)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


class _Spot(torch.nn.Module):
    """A model whose cat3 logit is the brightness of one 8x8 corner of the image: its evidence is there only."""

    def forward(self, batch):
        return {"cat3": torch.stack([batch["pixels"][:, :, :8, :8].mean((1, 2, 3)) * 10, torch.zeros(len(batch["pixels"]))], 1)}


def test_occluding_the_peak_costs_the_model_most_where_its_evidence_is():
    model = _Spot()
    model.p = torch.nn.Parameter(torch.zeros(1))  # a device to read
    pixels = torch.ones(4, 3, 32, 32)
    preds = np.zeros(4, dtype=int)
    on_evidence, elsewhere = np.zeros((4, 32, 32)), np.zeros((4, 32, 32))
    on_evidence[:, 3, 3], elsewhere[:, 28, 28] = 1.0, 1.0
    drop = gradcam.peak_occlusion_drop(model, pixels, None, on_evidence, preds)
    assert drop == pytest.approx(0.5, abs=1e-3)  # from a sure class to an even chance
    assert gradcam.peak_occlusion_drop(model, pixels, None, elsewhere, preds) == pytest.approx(0.0)


def test_peaks_map_back_to_original_pixels_and_are_scored():
    cam = np.zeros((1, 10, 10))
    cam[0, 2, 7] = 1.0
    points = gradcam.peak_points(cam, [(200, 100)])
    assert points[0] == pytest.approx((150.0, 25.0))
    assert gradcam.share_inside(points, np.array([[140, 20, 160, 30]])) == 1.0
    assert gradcam.share_inside(points, np.array([[0, 0, 10, 10]])) == 0.0


def test_predictor_shares_frozen_encoders_across_folds_without_changing_the_answer(tiny_data, tmp_path):
    from utils.models import build_model
    from utils.predict import Predictor, save_predictor
    from utils.training import _trainable_state

    cfg = build("tiny")
    sizes = {"cat1": 6, "cat2": 18, "cat3": 128}
    models, checkpoints = [], []
    for seed in (1, 2):  # two "folds" with different heads
        model = build_model("fusion_transformer", cfg, sizes, seed=seed).eval()
        path = tmp_path / f"fold{seed}.pt"
        torch.save(_trainable_state(model), path)
        models.append(model)
        checkpoints.append(path)
    save_predictor(cfg, TAX, {"fusion_transformer": checkpoints}, {"fusion_transformer": 1.0}, tmp_path)
    predictor = Predictor(tmp_path)
    images = [str(tiny_data / "image/test/TEST_00000.jpg"), str(tiny_data / "image/test/TEST_00001.jpg")]
    texts = ["한식 맛집", "바닷가 캠핑장"]
    shared = predictor.probabilities(images, texts, batch_size=1)
    batch = frozen_backbone("text", predictor.cfg).tokenize(texts, cfg.max_len)
    from utils.inputs import image_tensor
    norm = frozen_backbone("image", predictor.cfg)
    batch["pixels"] = torch.stack([image_tensor(p, cfg.image_size, norm.mean, norm.std) for p in images])
    with torch.no_grad():
        separate = sum(m(batch)["cat3"].softmax(-1) for m in models).numpy() / 2
    assert np.allclose(shared["cat3"], separate, atol=1e-5)


def test_kfold_members_follow_the_runs_validation_results():
    results = pd.DataFrame([
        {"model": "text_tfidf", "weighted_f1_cat3": 0.65, "train_seconds": 5},
        {"model": "text_finetuned", "weighted_f1_cat3": 0.70, "train_seconds": 80},
        {"model": "image_frozen", "weighted_f1_cat3": 0.575, "train_seconds": 10},
        {"model": "image_finetuned", "weighted_f1_cat3": 0.58, "train_seconds": 50},  # within 0.01, slower
        {"model": "late_fusion", "weighted_f1_cat3": 0.84, "train_seconds": 9},  # the held-out data's winner
        {"model": "fusion_transformer", "weighted_f1_cat3": 0.78, "train_seconds": 60},
    ])
    kinds, table = choose_members(results, margin=0.01)
    assert kinds == ["text_finetuned", "image_frozen", "late_fusion"]
    assert table["member"].sum() == 3 and set(table["family"]) == {"text", "image", "multimodal"}
    assert choose_members(results, margin=0.0)[0] == ["text_finetuned", "image_finetuned", "late_fusion"]
    with pytest.raises(ValueError, match="04 and 05"):
        choose_members(results.iloc[0:0], margin=0.01)

    # two cheap text models a run times at 0.7 and 1.0 s, and the next run at 0.8 and 0.8 s: the same member, the
    # one the registry lists first
    image = {"model": "image_frozen", "weighted_f1_cat3": 0.70, "train_seconds": 1.0}
    for tfidf_s, frozen_s in ((0.7, 1.0), (0.8, 0.8), (1.0, 0.7)):
        timed = pd.DataFrame([{"model": "text_frozen", "weighted_f1_cat3": 0.741, "train_seconds": frozen_s},
                              {"model": "text_tfidf", "weighted_f1_cat3": 0.731, "train_seconds": tfidf_s},
                              {"model": "text_finetuned", "weighted_f1_cat3": 0.733, "train_seconds": 22.0}, image])
        assert choose_members(timed, margin=0.02)[0] == ["text_tfidf", "image_frozen"]
    untimed = timed.assign(train_seconds=float("nan"))  # a results table without times still chooses
    assert choose_members(untimed, margin=0.02)[0] == ["text_tfidf", "image_frozen"]
    # without photos, one family: its best joins the cheaper pick, in the results' order; alone, the best is the pick
    text_only = timed[timed["model"] != "image_frozen"]
    assert choose_members(text_only, margin=0.02)[0] == ["text_frozen", "text_tfidf"]
    assert choose_members(text_only, margin=0.0)[0] == ["text_frozen"]


def test_kfold_members_adopt_the_imbalance_option_03_measured_helping(tmp_path):
    def study(gains: dict):
        rows = [{"option": "none", "Δ weighted F1": 0.0}] + [{"option": o, "Δ weighted F1": g} for o, g in gains.items()]
        record("late_fusion", {"rows": rows}, {}, tmp_path, section="augmentation")

    cfg = build("demo")
    assert adopted_imbalance(tmp_path, cfg) == ({}, "no imbalance option adopted (03 did not run)")
    study({"class-weighted loss": -0.13, "random over-sampling": 0.025, "mixup (alpha 0.4)": 0.012,
           "text EDA copies": 0.04})  # copies are not an option of the K-fold members
    fields, why = adopted_imbalance(tmp_path, cfg)
    assert fields == {"sampling": "over"} and "random over-sampling (+0.025" in why
    assert adopted_imbalance(tmp_path, build("demo", {"kfold_margin": 0.03}))[0] == {}
    assert adopted_imbalance(tmp_path, build("demo", {"kfold_adopt": False}))[0] == {}
    user = build("demo", {"kfold.fusion_transformer.sampling": "under"})
    assert member_overrides("fusion_transformer", user, {"sampling": "over"}) == {}  # the user's setting stays
    assert member_overrides("image_frozen", user, {"sampling": "over"}) == {"sampling": "over"}
    assert member_overrides("text_tfidf", cfg, {"sampling": "over"}) == {}
    assert member_overrides("late_fusion", cfg, {"mixup": 0.4}) == {"mixup": 0.4}  # cached inputs, as 03 measured
    assert member_overrides("text_finetuned", cfg, {"mixup": 0.4}) == {}  # raw token ids cannot be mixed
    assert member_overrides("late_fusion", cfg, {"mixup": 0.4}, distilling=True) == {}
    study({"random over-sampling": 0.004, "mixup (alpha 0.4)": 0.009})
    fields, why = adopted_imbalance(tmp_path, cfg)
    assert fields == {} and "best: mixup (alpha 0.4), +0.009" in why


def test_kfold_members_adopt_the_copies_03_measured_helping_those_that_read_what_they_augment(tmp_path):
    cfg = build("demo")
    assert adopted_copies(tmp_path, cfg) == (None, "no augmented copies adopted (03 did not run)")
    rows = [{"option": "none", "Δ weighted F1": 0.0}, {"option": "random over-sampling", "Δ weighted F1": 0.06},
            {"option": "text EDA copies", "Δ weighted F1": 0.021}, {"option": "image augmentation copies",
                                                                   "Δ weighted F1": 0.031},
            {"option": "text + image copies", "Δ weighted F1": 0.012}]
    record("late_fusion", {"rows": rows}, {}, tmp_path, section="augmentation")
    variant, why = adopted_copies(tmp_path, cfg)
    assert variant == "image augmentation copies" and "(+0.031 on late_fusion's validation in 03)" in why
    assert adopted_copies(tmp_path, build("demo", {"kfold_margin": 0.04}))[0] is None
    assert adopted_copies(tmp_path, build("demo", {"kfold_adopt": False}))[0] is None
    assert takes_copies("fusion_transformer", cfg, variant) and takes_copies("image_frozen", cfg, variant)
    assert not takes_copies("text_frozen", cfg, variant)  # the copies' text is the original's
    assert takes_copies("text_frozen", cfg, "text EDA copies") and takes_copies("text_frozen", cfg, "text + image copies")
    assert not takes_copies("text_tfidf", cfg, "text EDA copies")  # 03 measured a neural model
    assert not takes_copies("text_finetuned", cfg, "text EDA copies")  # end to end: augments as it draws rows
    assert not takes_copies("image_frozen", cfg, None)


def test_sum_decoding_lets_a_confident_child_outvote_an_unlikely_parent_where_product_does_not():
    """cat3 a is likely (0.6) under a parent its cat2 head finds nearly impossible (0.001); cat3 b is unlikely
    (0.05) under a plausible parent (0.5). The product (the most probable path) lets the parent veto a; the
    9th place's sum keeps a. Both return consistent paths."""
    parent2, parent1 = TAX.parent_of("cat3"), TAX.parent_of("cat2")
    a = 0
    b = next(i for i in range(len(parent2)) if parent2[i] != parent2[a])
    other = next(c for c in range(len(TAX.cat2)) if c not in (parent2[a], parent2[b]))
    p3 = np.zeros((1, len(parent2)))
    p3[0, a], p3[0, b] = 0.6, 0.05
    p3[0, [i for i in range(len(parent2)) if i not in (a, b)]] = 0.35 / (len(parent2) - 2)
    p2 = np.zeros((1, len(TAX.cat2)))
    p2[0, parent2[a]], p2[0, parent2[b]], p2[0, other] = 0.001, 0.5, 0.499
    p1 = np.zeros((1, len(TAX.cat1)))
    np.add.at(p1[0], [parent1[parent2[a]], parent1[parent2[b]]], 0.5)
    probs = {"cat1": p1, "cat2": p2, "cat3": p3}
    product, summed = hierarchical_decode(probs, TAX, "product"), hierarchical_decode(probs, TAX, "sum")
    assert product["cat3"][0] == b and summed["cat3"][0] == a
    for path in (product, summed):
        assert path["cat2"][0] == parent2[path["cat3"][0]] and path["cat1"][0] == parent1[path["cat2"][0]]
    with pytest.raises(ValueError, match="decode rule"):
        hierarchical_decode(probs, TAX, "max")


def test_keywords_never_repeat_a_category_name_or_a_stop_word():
    from utils.keywords import STOP_WORDS, KeywordModel, category_words
    from utils.text import noun_candidates

    texts = ["성수동 꽃게찜 한식 음식점. 방문객 주차 가능, 음식점 한식 맛집으로 인기.",
             "박물관 유물 전시실. 박물관 관람 시간은 매주 월요일 휴무일.",
             "한옥스테이 대청마루 온돌 한옥 숙박. 주변 경관 여행 일정."] + ["커피 디저트 브런치 카페거리."] * 60
    model = KeywordModel(TAX).fit(texts)
    found = model.keywords(texts[:3], k=5)
    banned = category_words(TAX) | STOP_WORDS
    assert all(found) and not {w for words in found for w in words} & banned
    assert {"꽃게찜", "성수동"} <= set(found[0]) and "대청마루" in found[2]
    raw = {w for words in noun_candidates(texts[:3]) for w in words}
    assert raw & category_words(TAX) and raw & STOP_WORDS  # unfiltered, both would have been hashtags
    assert "커피" not in model.keywords(["커피 한잔과 꽃게찜"], 3)[0]  # in most of the corpus: generic here


def test_hashtags_are_categories_then_keywords_without_spaces():
    from utils.keywords import hashtags

    assert hashtags(("관광지", "자연관광지", "자연생태관광지"), ["꽃게찜", "성수 동"]) == \
        "#관광지 #자연관광지 #자연생태관광지 #꽃게찜 #성수동"


def test_predictor_takes_text_alone_or_a_photo_alone_and_refuses_neither(tiny_data, tmp_path):
    from utils.models import build_model
    from utils.predict import PredictionError, Predictor, save_predictor
    from utils.training import _trainable_state

    cfg = build("tiny")
    units = {}
    for kind in ("fusion_transformer", "image_frozen"):
        path = tmp_path / f"{kind}.pt"
        torch.save(_trainable_state(build_model(kind, cfg, TAX.sizes, seed=1, stage="kfold")), path)
        units[kind] = [path]
    save_predictor(cfg, TAX, units, {"fusion_transformer": 0.5, "image_frozen": 0.5}, tmp_path)
    predictor = Predictor(tmp_path)
    photo = str(tiny_data / "image/test/TEST_00000.jpg")
    both = predictor.probabilities([photo], ["한식 맛집"])
    text_only = predictor.probabilities([None], ["한식 맛집"])
    with pytest.warns(UserWarning, match="the text carries most of the signal"):
        photo_only = predictor.probabilities([photo], [""])
    assert not np.allclose(both["cat3"], text_only["cat3"]) and not np.allclose(both["cat3"], photo_only["cat3"])
    image_member = predictor._member_probs("image_frozen", predictor.members[1][2],
                                           {"image_present": torch.tensor([False]), "text_present": torch.tensor([True]),
                                            "pixels": torch.zeros(1, 3, cfg.image_size, cfg.image_size)}, ["한식"])
    assert np.allclose(image_member["cat3"], 1 / 128)  # no photo: an image-only member has no information
    assert predictor.predict([None], ["서울 성수동 꽃게찜 맛집"])[0]["hashtags"].startswith("#")
    with pytest.raises(PredictionError, match="no text and no photo"):
        predictor.probabilities([None], ["  "])


def test_predictor_check_takes_every_test_row_or_a_seeded_draw():
    from utils.predict import check_rows

    assert list(check_rows(5, 0, 0)) == list(range(5)) and list(check_rows(5, 9, 0)) == list(range(5))
    draw = check_rows(994, 256, 0)
    assert len(set(draw)) == 256 and list(draw) == sorted(draw) and draw.max() < 994
    assert list(draw) == list(check_rows(994, 256, 0)) and list(draw) != list(check_rows(994, 256, 1))


@pytest.mark.parametrize("damage", ["unit", "card"])
def test_a_damaged_predictor_file_is_refused_naming_it_and_the_command_that_rebuilds_it(tmp_path, damage):
    from utils.models import build_model
    from utils.predict import PredictionError, Predictor, main, save_predictor
    from utils.training import _trainable_state

    cfg = build("tiny")
    path = tmp_path / "image_frozen.pt"
    torch.save(_trainable_state(build_model("image_frozen", cfg, TAX.sizes, seed=1, stage="kfold")), path)
    card = save_predictor(cfg, TAX, {"image_frozen": [path]}, {"image_frozen": 1.0}, tmp_path)
    broken = path if damage == "unit" else card
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(PredictionError, match=rf"{broken.name}: cannot be (read|loaded) .*rerun ./run_all.sh 06"):
        Predictor(tmp_path)
    assert main(["--text", "한식 맛집", "--run", str(tmp_path)]) == 2  # a message, not a traceback


def test_tfidf_units_load_from_pickles_and_from_an_older_runs_joblib_files(tmp_path):
    """TF-IDF units are pickles (read by Python's C unpickler, ten times faster than joblib's); a run written with
    joblib's files still loads to the same answers, and a truncated pickle is refused naming it."""
    import joblib

    from utils.io import save_model
    from utils.predict import PredictionError, Predictor, save_predictor

    cfg = build("tiny")
    texts = ["서울 종로구의 한정식 식당", "부산 해운대의 해수욕장과 모래사장", "강원도 평창의 스키장과 리조트"] * 4
    model = baselines.fit_quietly(baselines.tfidf_model("sgd", 1e-5), texts, np.array([0, 5, 9] * 4))
    answers = {}
    for name, write in (("pickle", lambda path: save_model(model, path.with_suffix(".pkl"))),
                        ("joblib", lambda path: Path(joblib.dump(model, path.with_suffix(".joblib"))[0]))):
        folder = tmp_path / name
        folder.mkdir()
        unit = write(folder / "model")
        save_predictor(cfg, TAX, {"text_tfidf": [unit]}, {"text_tfidf": 1.0}, folder)
        answers[name] = Predictor(folder).probabilities([None], ["해운대 해수욕장"])["cat3"]
    assert np.array_equal(answers["pickle"], answers["joblib"]) and answers["pickle"].argmax() == 5
    for name in ("pickle", "joblib"):
        unit = next((tmp_path / name).glob("model.*"))
        whole = unit.read_bytes()
        for end in np.linspace(1, len(whole) - 1, 12).astype(int):  # cut anywhere: a message, never a traceback
            unit.write_bytes(whole[:end])
            with pytest.raises(PredictionError, match=rf"{unit.name}: cannot be read .*rerun ./run_all.sh 06"):
                Predictor(tmp_path / name)


def test_the_views_member_averages_its_two_regressions_and_answers_the_same_from_its_predictor(tmp_path):
    """`views`: the morpheme and the character regressions' probabilities averaged, widened to every class of the
    taxonomy (a fold may lack some), and the same from the saved unit the predictor loads."""
    from utils.io import save_model
    from utils.predict import Predictor, save_predictor

    texts = ["서울 종로구의 한정식 식당", "부산 해운대의 해수욕장과 모래사장", "강원도 평창의 스키장과 리조트"] * 4
    model = baselines.fit_quietly(baselines.tfidf_model("views", 1e-5), texts, np.array([0, 5, 9] * 4))
    new = ["해운대 모래사장", "평창 리조트"]
    words, chars = (dict(model.named_estimators_)[v].predict_proba(new) for v in ("words", "chars"))
    proba = baselines.full_proba(model, new, len(TAX.cat3))
    assert np.allclose(proba[:, [0, 5, 9]], (words + chars) / 2) and proba.sum(1) == pytest.approx(1)
    assert proba.argmax(1).tolist() == [5, 9]
    unit = save_model(model, tmp_path / "model.pkl")
    save_predictor(build("tiny"), TAX, {"text_tfidf": [unit]}, {"text_tfidf": 1.0}, tmp_path)
    assert np.allclose(Predictor(tmp_path).probabilities([None, None], new)["cat3"], proba)


def test_a_predictor_analyses_new_text_with_its_runs_kiwi_options(tmp_path):
    """The card records the Kiwi options of the run's analyses; a card written before they were recorded (Kiwi's
    defaults, its multi-word dictionary loaded) is read with those, and the process's analyses follow it."""
    from utils import text
    from utils.io import save_model, write_json
    from utils.predict import Predictor, save_predictor

    cfg = build("tiny")
    model = baselines.fit_quietly(baselines.tfidf_model("sgd", 1e-5), ["한식 식당", "해수욕장 모래"] * 3,
                                  np.array([0, 5] * 3))
    card = save_predictor(cfg, TAX, {"text_tfidf": [save_model(model, tmp_path / "model.pkl")]}, {"text_tfidf": 1.0},
                          tmp_path)
    assert read_json(card)["kiwi"] == text.KIWI_OPTIONS == {"load_multi_dict": False}
    unweighted = save_predictor(cfg, TAX, {"text_tfidf": [tmp_path / "model.pkl"], "text_frozen": []},
                                {"text_tfidf": 1.0, "text_frozen": 0.0}, tmp_path)  # a member of weight 0: left out
    assert [m["kind"] for m in read_json(unweighted)["members"]] == ["text_tfidf"]
    try:
        old = read_json(card)
        del old["kiwi"]
        write_json(old, card)
        Predictor(tmp_path)
        assert text.kiwi_options() == {}
    finally:
        text.use_kiwi(text.KIWI_OPTIONS)
    assert text.kiwi_options() == text.KIWI_OPTIONS


def test_a_damaged_cache_entry_is_computed_again_to_the_same_states(tiny_data, tmp_path, capsys):
    from utils.data import load_dataset
    from utils.features import feature_data

    ds = load_dataset(tiny_data, progress=False, check_images=False)
    cfg = build("tiny", {"cache_dir": str(tmp_path / "cache")})
    first = feature_data(ds, cfg, ["image_final"]).tensors["image_final"].clone()
    array = next((tmp_path / "cache" / "features").glob("image-*/final.npy"))
    array.write_bytes(array.read_bytes()[:1000])
    again = feature_data(ds, cfg, ["image_final"]).tensors["image_final"]
    assert "cannot be read" in capsys.readouterr().out and torch.equal(first, again)


def test_the_tfidf_classifier_is_chosen_once_per_run_on_its_training_rows(tiny_data, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from utils.config import resolve
    from utils.experiments import tfidf_choice

    ds = load_dataset(tiny_data, progress=False, check_images=False)
    texts, labels = ds.train["overview"].tolist(), ds.labels("cat3")
    data = SimpleNamespace(labels_of=lambda rows: labels[rows])
    calls = []

    def choose(rows, y, alpha, seed):
        calls.append(list(rows))
        return "views", {"sgd": 0.5, "views": 0.6}

    def config(**settings):
        return resolve(build("tiny", {"data_dir": str(tiny_data), "output_dir": str(tmp_path), **settings}))

    monkeypatch.setattr(baselines, "choose_classifier", choose)
    cfg = config()
    assert tfidf_choice(cfg, ds, data, texts) == ("views", {"sgd": 0.5, "views": 0.6})
    split = stratified_split(ds.train["id"].to_numpy(), np.asarray(ds.given_cat3), cfg.seed)["split"]
    assert calls == [[t for t, s in zip(texts, split) if s == "train"]]  # 04's rows, not the validation rows
    assert tfidf_choice(cfg, ds, data, texts)[0] == "views" and len(calls) == 1  # a later fit of the run: kept
    assert tfidf_choice(config(seed=1), ds, data, texts)[0] == "views" and len(calls) == 2  # another run
    assert tfidf_choice(config(tfidf_classifier="sgd"), ds, data, texts) == ("sgd", {}) and len(calls) == 2
    assert labelfix.expert_config(cfg).tfidf_classifier == "sgd"  # 02's experts keep their measured settings


def test_choosing_the_tfidf_classifier_scores_both_out_of_fold_and_prefers_the_faster_on_a_tie():
    rng = np.random.default_rng(0)
    words = {c: [f"단어{c}{k}" for k in range(5)] for c in range(4)}
    labels = np.repeat(np.arange(4), 30)
    texts = [" ".join(rng.choice(words[c], 4)) + " 공통 설명" for c in labels]
    name, scores = baselines.choose_classifier(texts, labels, alpha=1e-5)
    assert set(scores) == {"sgd", "views"} and scores["sgd"] == scores["views"] == 1.0 and name == "sgd"


def test_imbalance_options_leave_distillations_unlabelled_test_rows_alone():
    from utils.training import _class_weights, epoch_indices

    labels = np.array([0, 0, 0, 1, -1, -1])  # two test rows with soft targets only
    weights = _class_weights(labels, 3)
    assert weights.tolist() == pytest.approx([4 / 9, 4 / 3, 1.0])  # from the four labelled rows
    rng = np.random.default_rng(0)
    drawn = np.concatenate([epoch_indices(labels, "over", rng) for _ in range(200)])
    assert set(drawn) == set(range(6)) and np.mean(labels[drawn] == 1) > np.mean(labels[drawn] == 0) / 3
    assert set(labels[epoch_indices(labels, "under", rng)]) == {0, 1, -1}
