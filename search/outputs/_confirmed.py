"""The export of a confirmed front: the companion study's results in place of the search's single scores.

When a run has a confirmation (:mod:`search.runner._confirm`), its export's Pareto set is the
*confirmed* front: the schedules no other confirmed schedule beats on the mean validation accuracy
over the confirmation's seeds and on every cost. Each is exported with the first seed's model; its
metrics hold the mean ± s.d. over the seeds, every seed's accuracy, and the test accuracy of every
seed's model (mean ± s.d.); the report adds Kendall's tau between the search's fidelity and the
confirmation's, and the tied band. Without a confirmation the export says, in one line, that its
front is unconfirmed (:data:`UNCONFIRMED`).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable

from ..engine._confirm import Confirmation, find_confirm_study, summarize
from ..engine.record import Attr, TrialView
from ._locate import RunView, trial_weights

__all__ = ["UNCONFIRMED", "load_confirmation", "confirmed_rows", "apply_confirmed", "confirmation_lines"]

#: The one line an export of an unconfirmed front says (console and report).
UNCONFIRMED = ("This front is unconfirmed: each schedule was trained once, with one seed, at the search's fidelity "
               "(a `confirm` block in the space, or `python -m search.confirm RUN --set confirm.seeds=2`, retrains it "
               "and its tied band with several seeds).")  # fmt: skip


def load_confirmation(view: RunView) -> Confirmation | None:
    """The run's confirmation (None: none ran, or none of its schedules has every seed yet)."""
    companion = find_confirm_study(_storage(view), view.live)
    if companion is None:
        return None
    conf = summarize(view.study, companion)
    return conf if conf.schedules else None


def _storage(view: RunView) -> Any:
    from ..engine._study import open_storage  # noqa: PLC0415

    return open_storage(view.storage_url)


def confirmed_rows(view: RunView, conf: Confirmation) -> tuple[list[dict[str, Any]], list[TrialView]]:
    """Rows (as :func:`search.outputs._tables.pareto_rows` makes them) and the first seed's trial, per front member."""
    names = view.objectives
    first = min(conf.block.get("training_seeds") or [0])
    search_trials = {TrialView(t).schedule_id: t for t in view.study.get_trials(deepcopy=False)
                     if t.values is not None and TrialView(t).outcome in ("evaluated", "imported")}  # fmt: skip
    rows, views = [], []
    for sid in conf.front:
        s = conf.by_id(sid)
        t = s.trials[first]
        src = search_trials.get(sid)
        values = dict(zip(names, src.values)) if src is not None else dict(s.costs)
        values["val_accuracy"] = s.accuracy[first]
        rows.append({"number": src.number if src is not None else t.number, "schedule_id": sid, "seed": s.name,
                     **values, "weights": TrialView(t).weights, "checkpoint": TrialView(t).checkpoint,
                     "outcome": "confirmed"})  # fmt: skip
        views.append(TrialView(t))
    return rows, views


def apply_confirmed(view: RunView, conf: Confirmation, configs: list[Any], *, test: bool, data: Any, device: str,
                    say: Callable[[Any], None], data_root: Any = None) -> None:  # fmt: skip
    """Put the confirmation's numbers into the exported configs; test every other seed's model.

    The other seeds' test results are cached in the export's evaluation cache, by weights, as the
    exported models' are: a re-export evaluates nothing twice. ``data`` is the test data when the
    caller loaded it already (else it is loaded here, from ``data_root`` if given).
    """
    from deeproots import accuracy_se  # noqa: PLC0415

    from types import SimpleNamespace  # noqa: PLC0415

    from deeproots._exported import sha256_file  # noqa: PLC0415

    from ._evaluate import EvaluationCache, evaluate_model  # noqa: PLC0415

    cache = EvaluationCache(configs[0].path.parent) if configs and configs[0].path is not None else None
    fidelity = conf.block.get("fidelity") or {}
    seeds = sorted(conf.block.get("training_seeds") or [])
    for cfg in configs:
        s = conf.by_id(cfg.schedule_id)
        m = cfg.metrics
        tests: dict[int, float] = {}
        if test and m.get("test_accuracy") is not None:
            tests[seeds[0]] = float(m["test_accuracy"])
            for seed in seeds[1:]:
                tv = TrialView(s.trials[seed])
                try:
                    with trial_weights(tv, view.bases, conf.study) as weights:
                        if weights is None:
                            say(f"  warning: no weights for {cfg.schedule_id} seed {seed} (checkpoint {tv.checkpoint!r}); "
                                "its test accuracy is left out")  # fmt: skip
                            continue
                        key = SimpleNamespace(weights_sha256=sha256_file(weights), data=cfg.data, metrics={}, onnx=None)
                        hit = cache.get(key) if cache is not None else None  # type: ignore[arg-type]
                        if hit is not None:
                            tests[seed] = float(hit["metrics"]["test_accuracy"])
                            continue
                        if data is None:
                            from ._evaluate import load_test_data  # noqa: PLC0415

                            data = load_test_data(view.meta.data_config, data_root)
                        key.metrics = evaluate_model(_load(view, cfg.schedule_id, weights), data, device)
                except Exception as e:  # noqa: BLE001 (an unreachable object store, a deleted folder: one line, export the rest)
                    say(f"  warning: cannot test {cfg.schedule_id} seed {seed} (checkpoint {tv.checkpoint}): "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; its test accuracy is left out")  # fmt: skip
                    continue
                tests[seed] = float(key.metrics["test_accuracy"])
                if cache is not None:
                    cache.put(key)  # type: ignore[arg-type]
                    cache.save()
                say(f"  {cfg.schedule_id} seed {seed}: test {tests[seed]:.4f} (its model, from {conf.study})")
        val_size = (fidelity.get("data") or {}).get("val_size") or view.meta.data_config.get("val_size")
        m["val_accuracy_reevaluated_seed_model"] = m.pop("val_accuracy_reevaluated", None)
        orig = view.orig_cost
        for cost in ("flops", "params"):  # the companion study's trials hold the costs as objectives only
            if m.get(cost) is not None and orig is not None and m.get(f"{cost}_vs_orig_percent") is None:
                m[f"{cost}_vs_orig_percent"] = round(100.0 * float(m[cost]) / float(getattr(orig, cost)), 1)
        m.update({
            "val_accuracy": s.mean, "val_accuracy_sd": None if math.isnan(s.sd) else s.sd,
            "val_accuracy_se": accuracy_se(s.mean, int(val_size)) if val_size else None,
            "val_accuracy_per_seed": {int(k): float(v) for k, v in sorted(s.accuracy.items())},
            "seeds": len(s.accuracy), "search_val_accuracy": s.search_accuracy,
            "test_accuracy_per_seed": tests or None,
            "test_accuracy": statistics.fmean(tests.values()) if tests else m.get("test_accuracy"),
            "test_accuracy_sd": statistics.stdev(tests.values()) if len(tests) > 1 else None,
            "confirmed": True,
        })  # fmt: skip
        if fidelity.get("trainer"):
            cfg.training = {**dict(cfg.training or {}), **fidelity["trainer"], "seed": seeds[0]}
        search_trial = s.trials[seeds[0]].user_attrs.get(Attr.SEARCH_TRIAL)
        cfg.search = {**dict(cfg.search or {}), "trial": search_trial, "outcome": "confirmed", "confirm_study": conf.study,
                      "confirm_trials": {int(k): t.number for k, t in sorted(s.trials.items())}, "confirmed_seeds": seeds}  # fmt: skip
        cfg.write(cfg.path)


def _load(view: RunView, schedule_id: str, weights: Path) -> Any:
    from safetensors.torch import load_file  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    meta = view.meta
    model = deeproots.build_model(meta.arch, schedule_id, num_classes=meta.num_classes, **dict(meta.model_options))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def confirmation_lines(conf: Confirmation | None, paper: dict[str, str] | None = None) -> list[str]:
    """What the report and the console say about the confirmation (one line when there is none).

    Args:
        conf: the confirmation, or None.
        paper: schedule id -> paper name (``RunView.paper``).
    """
    if conf is None:
        return [UNCONFIRMED]
    b = conf.block
    fid = ", ".join(f"`{k}={v}`" for k, v in (b.get("overrides") or {}).items()) or "the search's own fidelity"
    seeds = b.get("training_seeds") or []
    lines = [f"This front is confirmed: the search's front and its tied band ({len(b.get('selected') or [])} schedules, "
             f"at most {b.get('max_schedules')}) retrained with {len(seeds)} training seeds ({', '.join(map(str, seeds))}) "
             f"at {fid}, in study `{conf.study}`; the Pareto set is the front of the mean accuracies over the seeds "
             f"({len(conf.front)} of {len(conf.schedules)} confirmed schedules)."]  # fmt: skip
    if conf.tau is not None:
        t = conf.tau
        lines.append(f"Kendall τ between the search's accuracies and the confirmation's means: {t.tau:.2f} "
                     f"({100 * t.confidence:.0f} % paired bootstrap interval {t.low:.2f} to {t.high:.2f}, {t.schedules} schedules).")  # fmt: skip
    else:
        lines.append("Kendall τ between the two fidelities needs at least 3 confirmed schedules.")
    band = b.get("band") or []
    lines.append(f"Search front: {', '.join(f'`{s}`' for s in b.get('front') or []) or '-'}; tied band (exact McNemar, "
                 f"p >= {b.get('alpha', 0.05):g}, nowhere costlier than the member it ties): "
                 f"{', '.join(f'`{s}`' for s in band) if band else 'empty'}.")  # fmt: skip
    table = ["| schedule | paper name | from | search val acc (1 seed) | confirmed val acc, mean ± s.d. | per seed | confirmed front |",
             "|---|---|---|---:|---:|---|---|"]
    for c in conf.schedules:
        sd = "-" if math.isnan(c.sd) else f"{100 * c.sd:.2f}"
        per = ", ".join(f"{k}: {100 * v:.1f} %" for k, v in sorted(c.accuracy.items()))
        table.append(f"| `{c.schedule_id}` | {c.name or (paper or {}).get(c.schedule_id, '')} | {'front' if c.on_front else 'tied band'} | "
                     f"{100 * c.search_accuracy:.2f} % | {100 * c.mean:.2f} ± {sd} % | {per} | "
                     f"{'yes' if c.schedule_id in conf.front else 'no'} |")  # fmt: skip
    lines.append("\n".join(table))
    if conf.incomplete:
        lines.append(f"Not yet confirmed with every seed (left out): {', '.join(f'`{s}`' for s in conf.incomplete)}.")
    return lines
