"""K-fold out-of-fold predictions, ensemble weights fitted on them, and the contest submission."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from . import distributed
from . import kinds as registry
from .experiments import fit_model, model_data
from .config import Config
from .io import atomic_path, read_json, write_csv
from .metrics import hierarchical_decode, weighted_f1
from .progress import bar
from .taxonomy import LEVELS
from .training import TimeBudgetExceeded, session_budget


_DEFAULTS = Config.__dataclass_fields__


def _adopted(run_dir, cfg, options, what: str) -> tuple[str | None, str]:
    """Of `options` (names of 03's rows), the one that 03's study (metrics.json, section augmentation) measured
    raising validation weighted F1 by at least `kfold_margin`, the best such one, with the reason in words; None
    where 03 did not run, `kfold_adopt` is off, or nothing helped that much."""
    studies = read_json(Path(run_dir) / "metrics.json", default={}).get("augmentation", {})
    if not cfg.kfold_adopt or not studies:
        return None, f"no {what} adopted (" + ("kfold_adopt=false)" if not cfg.kfold_adopt else "03 did not run)")
    kind, study = next(iter(studies.items()))
    gains = {r["option"]: r["Δ weighted F1"] for r in study["rows"] if r["option"] in options and r["option"] != "none"}
    if not gains:
        return None, f"no {what} adopted: 03 measured none"
    best = max(gains, key=gains.get)
    if gains[best] < cfg.kfold_margin:
        return None, (f"no {what} adopted: none raised {kind}'s validation weighted F1 in 03 by "
                      f"kfold_margin={cfg.kfold_margin:g} (best: {best}, {gains[best]:+.3f})")
    return best, f"adopted for the neural members: {best} ({gains[best]:+.3f} on {kind}'s validation in 03)"


def adopted_imbalance(run_dir, cfg) -> tuple[dict, str]:
    """The schedule fields of the imbalance option 03 measured helping (`_adopted`), and why. What each member
    takes of it: `member_overrides`."""
    from .studies import OPTIONS

    best, why = _adopted(run_dir, cfg, OPTIONS, "imbalance option")
    return (dict(OPTIONS[best]) if best else {}), why


def adopted_copies(run_dir, cfg) -> tuple[str | None, str]:
    """The kind of augmented copies (studies.COPIES) 03 measured helping (`_adopted`), and why. Which members
    train on them: `takes_copies`; on what: studies.member_copies. Taken beside an adopted imbalance option,
    a pairing 03 did not measure."""
    from .studies import COPIES

    return _adopted(run_dir, cfg, COPIES, "augmented copies")


def takes_copies(kind: str, cfg, variant: str | None) -> bool:
    """Whether K-fold member `kind` trains on `variant`'s copies: a neural kind on cached inputs (end-to-end
    members augment their rows as they draw them: `image_augment`, `text_augment`) that reads a modality the
    copies augment."""
    from .studies import COPIES

    spec = registry.get(kind)
    return bool(variant) and spec.neural and cfg.schedule(kind, "kfold").training_mode == "cached" \
        and bool(spec.reads & set(COPIES[variant]))


def member_overrides(kind: str, cfg, adopted: dict, distilling: bool = False) -> dict:
    """What of `adopted` a K-fold member takes: none for a kind that is not neural, no field set for the member's
    K-fold stage (`kfold.fusion_transformer.sampling=...` is the user's), and mixup only where 03 measured it, on
    cached inputs, and never with distillation's soft test rows."""
    schedule = cfg.schedule(kind, "kfold")
    if not registry.get(kind).neural:
        return {}
    taken = {k: v for k, v in adopted.items() if getattr(schedule, k) == _DEFAULTS[k].default}
    if "mixup" in taken and (schedule.training_mode != "cached" or distilling):
        del taken["mixup"]
    return taken


def kfold_predictions(kind: str, ds, cfg, folds: np.ndarray, seeds, checkpoints_dir, run_dir, tag: str = "kfold",
                      budget=None, soft_test: dict | None = None, overrides: dict | None = None,
                      copies: str | None = None) -> dict:
    """Out-of-fold probabilities for every train row and fold-averaged test probabilities.

    Every (seed, fold) unit lives in checkpoints_dir/<tag>/<kind>/seed<s>/fold<k>: rerunning skips finished
    units and resumes an interrupted one; a unit trained under other folds or settings is retrained, never
    reused. Saved to <run>/oof/<tag>_<kind>.npz. `checkpoints` lists exactly this call's units.
    `budget` (a training.TimeBudget): stop cleanly before it runs out, naming the units that remain.
    Units train `unit_processes(cfg)` at once, in worker processes spread over the GPUs (`processes`).
    `soft_test` (per level, the ensemble's test probabilities): distillation, the 9th place's last step; every
    unit also trains on all test rows with those soft targets (its out-of-fold rows never get one).
    `copies` (`adopted_copies`): the member also trains on those augmented copies of its unit's training rows."""
    budget = budget if budget is not None else session_budget()  # handed to the worker processes too
    n_train, n_test = len(ds.train), len(ds.test)
    sizes = ds.taxonomy.sizes
    oof = {level: np.zeros((n_train, sizes[level])) for level in LEVELS}
    test = {level: np.zeros((n_test, sizes[level])) for level in LEVELS}
    overrides = overrides or {}
    data = _kfold_data(kind, ds, cfg, soft_test, copies)  # in the parent also with several processes: it builds the cache
    fold_scores, checkpoints = [], []
    n_folds = int(folds.max()) + 1
    units = [(seed, k) for seed in seeds for k in range(n_folds)]
    jobs = [(kind, ds, cfg, folds, seed, k, checkpoints_dir, tag, budget, soft_test, overrides, copies)
            for seed, k in units]
    processes = unit_processes(cfg, len(units))
    frozen = registry.get(kind).starts_from(cfg)
    if processes > 1 and frozen is not None:  # the warm starts' cache too: workers building one entry at once collide
        _kfold_data(frozen, ds, cfg, soft_test, copies)
    results = _run_parallel(jobs, processes, cfg.device) if processes > 1 else (_train_unit(job, data) for job in jobs)
    for i, result in enumerate(bar(results, f"{kind}: seeds x folds ({processes} at once)", total=len(units))):
        if isinstance(result, TimeBudgetExceeded):  # this unit and, in one process, every later one; in several, the
            finished = isinstance(results, list)     # later ones that were stopped too
            left = [f"seed {s} fold {f}" for j, (s, f) in enumerate(units)
                    if j == i or (j > i and (not finished or isinstance(results[j], TimeBudgetExceeded)))]
            raise TimeBudgetExceeded(f"{result}. {kind}: {len(left)} of {len(units)} units remain ({', '.join(left)}); "
                                     f"rerun the same command to continue") from None
        (seed, k), (val_probs, test_probs, checkpoint) = units[i], result
        val_idx = np.flatnonzero(folds == k)
        for level in LEVELS:
            oof[level][val_idx] += val_probs[level] / len(seeds)
            test[level] += test_probs[level] / (len(seeds) * n_folds)
        pred = hierarchical_decode(val_probs, ds.taxonomy, cfg.decode)["cat3"]
        fold_scores.append(weighted_f1(ds.labels("cat3")[val_idx], pred))
        if checkpoint is not None:
            checkpoints.append(checkpoint)
    path = Path(run_dir) / "oof" / f"{tag}_{kind}.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"oof_{k}": v for k, v in oof.items()}, **{f"test_{k}": v for k, v in test.items()},
                                folds=folds, fold_scores=np.array(fold_scores))
    return {"oof": oof, "test": test, "fold_scores": fold_scores, "checkpoints": checkpoints}


def unit_processes(cfg, n_units: int) -> int:
    """How many K-fold units train at once: `processes`, or one per GPU (0), never more than the units."""
    return max(1, min(distributed.processes_for(cfg), n_units))


def _kfold_data(kind: str, ds, cfg, soft_test: dict | None, copies: str | None = None):
    """What a K-fold member trains on: its model data, with the augmented copies it takes (`takes_copies`)
    appended, and distillation's soft targets on the test rows."""
    data = model_data(ds, cfg, [kind])
    if takes_copies(kind, cfg, copies):
        from .studies import member_copies

        extra, sources, digest = member_copies(kind, ds, cfg, copies, data)
        data, _ = data.extended(extra, sources, digest)
    if soft_test is None:
        return data
    return data.with_soft_labels(data.test_rows, soft_test)


def unit_rows(data, folds: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold `k`'s training and validation rows of `data`: the training rows include the augmented copies of
    those rows (`data.copies`), never a copy of a validation row."""
    train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    if data.copies is not None:
        rows, sources = data.copies
        train_idx = np.concatenate([train_idx, rows[np.isin(sources, train_idx)]])
    return train_idx, val_idx


def _train_unit(job, data=None, device: str | None = None):
    """One K-fold unit (seed, fold): (validation probabilities, test probabilities, checkpoint), or the
    TimeBudgetExceeded that stopped it (returned, so that the parent names every unit left)."""
    kind, ds, cfg, folds, seed, k, checkpoints_dir, tag, budget, soft_test, overrides, copies = job
    if device is not None and device.startswith("cuda"):  # "cuda" now means this GPU; the unit's settings (and so
        import torch                                      # its checkpoint's key) stay those of one process

        torch.cuda.set_device(device)
    if data is None:  # a worker process: the cache the parent built, read memory-mapped
        data = _kfold_data(kind, ds, cfg, soft_test, copies)
    test_idx = data.test_rows
    train_idx, val_idx = unit_rows(data, folds, k)
    if soft_test is not None:
        train_idx = np.concatenate([train_idx, test_idx])
    try:
        init = _warm_start_unit(kind, ds, cfg, train_idx, val_idx, Path(checkpoints_dir) / tag, seed, k, budget,
                                soft_test, overrides, copies)
        trained = fit_model(kind, data, train_idx, val_idx, ds, cfg, Path(checkpoints_dir) / tag / kind / f"seed{seed}",
                            f"fold{k}", seed, stage="kfold", init_from=init, budget=budget,
                            **member_overrides(kind, cfg, overrides, distilling=soft_test is not None))
    except TimeBudgetExceeded as exc:
        return exc
    return trained.probabilities(val_idx), trained.probabilities(test_idx), trained.checkpoint


def _warm_start_unit(kind, ds, cfg, train_idx, val_idx, tag_dir: Path, seed: int, k: int, budget, soft_test,
                     overrides: dict, copies: str | None = None):
    """A fine-tune's K-fold unit starts, as in 04, from its frozen model's head trained on the same rows: that
    frozen unit (the member's own when the frozen kind is a member too, else trained here, once). Without it
    the demo's short fine-tunes start from a random head and stay near chance. It trains with the overrides the
    frozen kind takes as a member, so that both share one unit."""
    frozen = registry.get(kind).starts_from(cfg)
    if frozen is None:
        return None
    return fit_model(frozen, _kfold_data(frozen, ds, cfg, soft_test, copies), train_idx, val_idx, ds, cfg,
                     tag_dir / frozen / f"seed{seed}", f"fold{k}", seed, stage="kfold", budget=budget,
                     **member_overrides(frozen, cfg, overrides, distilling=soft_test is not None)).checkpoint


_WORKER_DEVICE = "cpu"  # a K-fold worker process's own device, taken once when it starts (`_worker_init`)


def _worker_init(threads: int, slots) -> None:
    """A worker takes one device from `slots` for its whole life: the GPU follows the worker, not the unit, so
    two units never share a GPU while another idles (units differ in length: early stopping, warm starts)."""
    import torch

    from .runtime import deterministic

    global _WORKER_DEVICE
    _WORKER_DEVICE = slots.get()
    torch.set_num_threads(threads)
    deterministic()


def _in_worker(run, job):
    return run(job, None, _WORKER_DEVICE)


def worker_devices(processes: int, device: str) -> list[str]:
    """One device per worker process: GPU i mod the GPU count, or the CPU."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() and device != "cpu" else 0
    return [f"cuda:{i % gpus}" if gpus else "cpu" for i in range(processes)]


def _run_parallel(jobs, processes: int, device: str, run=None, devices: list[str] | None = None):
    """The units in `processes` worker processes (spawned: safe with CUDA and from notebooks), each worker on its
    own device (`worker_devices`; `devices` for tests), the CPU's cores shared out; results in unit order. Units
    are independent (each seeded, each its own resumable folder), so the answers equal those of one process.
    A unit that fails (out of memory) raises as soon as it does: the units not started are dropped, the running
    ones finish (a rerun skips them), rather than the error waiting for every queued unit to train first."""
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for name in devices or worker_devices(processes, device):
        slots.put(name)
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_init,
                               initargs=(distributed.cpu_threads(processes), slots))
    try:
        futures = [pool.submit(_in_worker, run or _train_unit, job) for job in jobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):  # drop the queue now, not after the units before it
            pool.shutdown(wait=False, cancel_futures=True)
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# Two training times count as the same cost when the slower is within this factor of the faster plus these seconds:
# measured seconds move 10-30% between runs of one command (0.7 against 1.0 s for the same model), and a choice that
# followed them would change a run's members, and its submission, from one run to the next.
SAME_COST_FACTOR, SAME_COST_SECONDS = 2.0, 5.0


def choose_members(results: pd.DataFrame, margin: float) -> tuple[list[str], pd.DataFrame]:
    """The K-fold members this run's own validation results call for: per family (utils/kinds.py: text, image,
    multimodal) the best model by validation weighted F1, or, among the models within `margin` of that best, of
    those that train about as fast as the fastest (`SAME_COST_FACTOR`; a member trains once per fold and seed) the
    one the registry lists first (utils/kinds.py registers each family's kinds in this order of preference). That
    puts TF-IDF before e5 frozen when both qualify: the fusion members already read e5, and TF-IDF's other view
    raised the ensemble's out-of-fold F1 where the two were swapped (foreign-mixed 0.9103 against 0.9097; the full
    profile's shortened run there 0.828 against 0.817). That preference rests on the other families' members:
    where only one family has results (data without photos, or a run of one notebook's models), the family's best
    by validation joins its pick, so that the ensemble has both rather than the cheaper alone; `ensemble_weights`
    keeps one alone where the blend scores lower out of fold (text-only data: docs/results.md).
    Returns the kinds and the table behind the choice."""
    rows = []
    for family, kinds in registry.families().items():
        scored = results[results["model"].isin(kinds) & results["weighted_f1_cat3"].notna()]
        if scored.empty:
            continue
        best = scored["weighted_f1_cat3"].max()
        near = scored[scored["weighted_f1_cat3"] >= best - margin]
        seconds = near["train_seconds"].astype(float)
        # an untimed model (NaN seconds) counts as cheap
        quick = set(near.loc[~(seconds > SAME_COST_FACTOR * seconds.min() + SAME_COST_SECONDS), "model"])
        pick = next(k for k in kinds if k in quick)
        for r in scored.itertuples():
            rows.append({"family": family, "model": r.model, "validation weighted F1 cat3": r.weighted_f1_cat3,
                         "train seconds": r.train_seconds, "within margin of the best": r.weighted_f1_cat3 >= best - margin,
                         "member": r.model == pick})
    table = pd.DataFrame(rows)
    if not table.empty and table["family"].nunique() == 1:
        table.loc[table["validation weighted F1 cat3"].astype(float).idxmax(), "member"] = True
    if table.empty:
        raise ValueError("kfold_models=auto chooses from the validation results of notebooks 04 and 05 "
                         "(metrics.json of this run), and there are none: run them first or name the members "
                         "(--set kfold_models=text_tfidf,fusion_transformer)")
    return table.loc[table["member"], "model"].tolist(), table


def blend(members: list[dict], weights) -> dict:
    return {level: sum(w * m[level] for w, m in zip(weights, members)) for level in members[0]}


def ensemble_weights(oof_members: list[dict], y3: np.ndarray, taxonomy, rule: str = "product") -> np.ndarray:
    """`fit_weights`' blend, unless one member alone scores a higher out-of-fold weighted F1 on cat3 (the run's
    decoding): then that member alone. Log loss and F1 can disagree (on text-only data a regression's calibrated
    probabilities drew the weight from the better e5 member), and an ensemble below its best member helps nobody."""
    weights = fit_weights(oof_members, y3)

    def f1(w):
        return weighted_f1(y3, hierarchical_decode(blend(oof_members, w), taxonomy, rule)["cat3"])

    alone = np.eye(len(oof_members))
    scores = [f1(w) for w in alone]
    best = int(np.argmax(scores))
    return alone[best] if scores[best] > f1(weights) else weights


def fit_weights(oof_members: list[dict], y3: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the out-of-fold log loss of cat3 (smooth, unlike F1)."""
    stack = np.stack([m["cat3"] for m in oof_members])

    def loss(theta):
        w = np.exp(theta - theta.max())
        w /= w.sum()
        p = np.tensordot(w, stack, axes=1)[np.arange(len(y3)), y3]
        return -np.log(p + 1e-9).mean()

    result = minimize(loss, np.zeros(len(oof_members)), method="Nelder-Mead", options={"xatol": 1e-4, "maxiter": 2000})
    w = np.exp(result.x - result.x.max())
    return w / w.sum()


def fold_spread(probs: dict, y3: np.ndarray, folds: np.ndarray, taxonomy, rule: str = "product") -> tuple[float, float, float]:
    """Out-of-fold weighted F1 of cat3 over all rows, and its mean and standard deviation across folds."""
    pred = hierarchical_decode(probs, taxonomy, rule)["cat3"]
    per_fold = [weighted_f1(y3[folds == k], pred[folds == k]) for k in range(int(folds.max()) + 1)]
    return weighted_f1(y3, pred), float(np.mean(per_fold)), float(np.std(per_fold))


def distill(kinds, members: dict, weights, ds, cfg, folds, seeds, checkpoints_dir, run_dir, budget=None,
            overrides: dict | None = None, copies: str | None = None):
    """The 9th place's last step: for each neural member a student per fold and seed, trained like its teacher
    and also on every test row with the ensemble's soft labels (`kfold_predictions(soft_test=...)`). Returns the
    members with the students in their teachers' places, their weights (refitted out of fold), and the table of
    out-of-fold scores, teacher against student, per member and for the ensemble. The students' OOF scores are a
    little optimistic: the teachers behind the soft labels were trained on the rows the students are scored on.
    `overrides`, `copies`: the teachers' schedule fields (`adopted_imbalance`) and copies (`adopted_copies`)."""
    y3 = ds.labels("cat3")
    soft = blend([members[k]["test"] for k in kinds], weights)
    students = {k: kfold_predictions(k, ds, cfg, folds, seeds, checkpoints_dir, run_dir, tag="distill", budget=budget,
                                     soft_test=soft, overrides=overrides, copies=copies)
                for k in kinds if registry.get(k).neural}  # TF-IDF takes no soft labels
    taught = {k: students.get(k, members[k]) for k in kinds}
    taught_weights = ensemble_weights([taught[k]["oof"] for k in kinds], y3, ds.taxonomy, cfg.decode)

    def score(probs):
        return fold_spread(probs, y3, folds, ds.taxonomy, cfg.decode)[0]

    rows = [{"model": k, "teacher OOF weighted F1 cat3": score(members[k]["oof"]),
             "student OOF weighted F1 cat3": score(s["oof"])} for k, s in students.items()]
    rows.append({"model": "ensemble",
                 "teacher OOF weighted F1 cat3": score(blend([members[k]["oof"] for k in kinds], weights)),
                 "student OOF weighted F1 cat3": score(blend([taught[k]["oof"] for k in kinds], taught_weights))})
    return taught, taught_weights, pd.DataFrame(rows)


def write_submission(ds, test_probs: dict, path, rule: str = "product") -> pd.DataFrame:
    """`id,cat3` in test.csv order, every label one of the 128, written atomically."""
    cat3 = ds.taxonomy.decode("cat3", hierarchical_decode(test_probs, ds.taxonomy, rule)["cat3"])
    submission = pd.DataFrame({"id": ds.test["id"].to_numpy(), "cat3": cat3})
    assert list(submission["id"]) == list(ds.sample_submission["id"])
    assert submission["cat3"].isin(ds.taxonomy.cat3).all()
    write_csv(submission, path)
    return submission


def score_against_truth(ds, submission: pd.DataFrame) -> float | None:
    """Weighted F1 of a submission against the bundled data's hidden test labels; None on real data."""
    if ds.truth_dir is None:
        return None
    truth = pd.read_csv(ds.truth_dir / "test_labels.csv", dtype=str).set_index("id").loc[submission["id"], "cat3"]
    return weighted_f1(truth.to_numpy(), submission["cat3"].to_numpy())
