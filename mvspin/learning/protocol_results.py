"""The synthetic protocol's results: one record per run, the statistics over seeds, the plot.

A run is one network (arm ``untrained``, ``ablation`` or ``full``; variant ``all_3d`` or
``partial_3d``) trained with one **training seed** on the training set of one **data seed**, and
evaluated on that data seed's test set. The claim of the paper's Table 7 (the full loop beats the
no-fitting ablation) is read from :meth:`ProtocolResults.paired`: the two arms of one
(variant, data seed, training seed) share data, initialisation and data order, so their
difference is the method's effect plus training noise, and the noise is measured per pair as
the **checkpoint-to-checkpoint noise**: the mean absolute change of validation PA-MPJPE between
consecutive checkpoints from the middle checkpoint on (the larger of the two runs'). A pair
counts as a win when the full loop is ahead by more than twice that noise. Where the curves still
fall there (a cosine schedule's tail), that measure counts the fall as noise too; the **jitter**
(:func:`checkpoint_jitter`, the curve's scatter around a local linear trend) is printed beside it
for that reason. The win is judged by the noise, the criterion fixed before the runs.
:meth:`ProtocolResults.paired_summary` pools the pairs of a variant: the mean difference, its
standard error over pairs and on how many pairs the full loop is ahead.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArmResult", "PairedDifference", "PairedSummary", "ProtocolResults", "checkpoint_jitter", "checkpoint_noise",
           "loss_curve", "store_curve", "store_summary", "plot_results", "read_results"]

STORE_KEYS = ("store/mean_error_px", "store/accepted_share")
"""The fits store's statistics the trainer logs (mean reprojection error of the stored fits in
224 px crop pixels, share of bundles whose fit supervises), read per logged step."""


@dataclass
class ArmResult:
    """One trained (or untrained) network evaluated on its data seed's test set.

    Attributes:
        arm: ``"full"``, ``"ablation"`` or ``"untrained"``. variant: ``"all_3d"`` or
        ``"partial_3d"``. seed: training seed. steps: training steps. wall_s: training seconds
        (of the last invocation, for a resumed run).
        mpjpe, pa_mpjpe: test-set means, mm. curve: ``[(step, val MPJPE, val PA-MPJPE), ...]``.
        losses: ``[(step, {term: value})]`` from the trainer's ``metrics.jsonl``.
        store: first and last logged fits-store statistics (error, acceptance), when logged.
        out_dir: the run's folder.
        cpu_s: CPU seconds of the run's process (all its threads): training over every
            invocation (carried by its checkpoints) plus the evaluations; the cost of the run on
            a shared machine, where wall time also counts other work.
        data_seed: the data seed (its training and test sets).
        store_curve: ``[(step, store mean error px, store accepted share), ...]`` over training.
    """

    arm: str
    variant: str
    seed: int
    steps: int
    wall_s: float
    mpjpe: float
    pa_mpjpe: float
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    losses: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    store: dict[str, Any] = field(default_factory=dict)
    out_dir: str = ""
    cpu_s: float = 0.0
    data_seed: int = 0
    store_curve: list[tuple[int, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class PairedDifference:
    """Full loop minus ablation for one (variant, data seed, training seed), mm (negative: the
    full loop is better). ``noise``: the pair's checkpoint-to-checkpoint noise (mm, NaN with fewer
    than 3 checkpoints); ``win``: the full loop ahead by more than ``2 * noise``. ``jitter``: the
    larger of the two runs' :func:`checkpoint_jitter` (NaN without enough checkpoints), shown beside
    the noise; ``jitter_win``: ahead by more than ``2 * jitter``."""

    variant: str
    data_seed: int
    seed: int
    d_mpjpe: float
    d_pa_mpjpe: float
    noise: float
    jitter: float = float("nan")

    @property
    def win(self) -> bool:
        return bool(math.isfinite(self.noise) and -self.d_pa_mpjpe > 2 * self.noise)

    @property
    def jitter_win(self) -> bool:
        return bool(math.isfinite(self.jitter) and -self.d_pa_mpjpe > 2 * self.jitter)


@dataclass(frozen=True)
class PairedSummary:
    """The paired differences of one variant pooled over its pairs (data seeds x training seeds),
    mm: the mean, its standard error (sample std over pairs / sqrt(pairs); NaN for one pair),
    ``ahead``: pairs where the full loop's PA-MPJPE is lower, ``wins``: pairs that are wins,
    ``jitter_wins``: pairs ahead by more than twice their jitter."""

    variant: str
    pairs: int
    d_mpjpe: float
    d_mpjpe_se: float
    d_pa_mpjpe: float
    d_pa_mpjpe_se: float
    ahead: int
    wins: int
    jitter_wins: int = 0


def _late_curve(curve: list[tuple[int, float, float]]) -> np.ndarray:
    """Validation PA-MPJPE (mm) from the middle checkpoint (index ``(n - 1) // 2``) on: the part of
    a run where it should have settled, which both noise measures read."""
    pa = [c[2] for c in curve]
    return np.asarray(pa[(len(pa) - 1) // 2:], dtype=float)


def checkpoint_noise(curve: list[tuple[int, float, float]]) -> float:
    """Mean absolute change of validation PA-MPJPE (mm) between consecutive checkpoints, from the
    middle checkpoint (index ``(n - 1) // 2``) on; NaN with fewer than 3 checkpoints."""
    if len(curve) < 3:
        return float("nan")
    return float(np.abs(np.diff(_late_curve(curve))).mean())


def checkpoint_jitter(curve: list[tuple[int, float, float]]) -> float:
    """Scatter (mm) of validation PA-MPJPE around a local linear trend, from the middle checkpoint
    on (as :func:`checkpoint_noise`): the mean absolute second difference divided by
    ``sqrt(6) * sqrt(2 / pi)``, which is the standard deviation of white noise added to any straight
    line. NaN with fewer than 3 checkpoints from the middle on."""
    tail = _late_curve(curve)
    if len(tail) < 3:
        return float("nan")
    return float(np.abs(np.diff(tail, 2)).mean() / (math.sqrt(6) * math.sqrt(2 / math.pi)))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _std(x: np.ndarray) -> float:
    """Sample standard deviation (ddof 1); NaN for one value."""
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def store_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """First and last finite value of each fits-store / in-loop-fit statistic the trainer logged:
    ``{key: {"first": (step, value), "last": (step, value)}}``."""
    keys = [k for k in ("store/mean_error", "store/mean_error_px", "store/accepted_share", "store/fitted_share",
                        "fits/accepted_share", "fits/new_error", "fits/new_error_px") if any(k in m for m in metrics)]
    out: dict[str, Any] = {}
    for k in keys:
        rows = [(int(m.get("step", 0)), float(m[k])) for m in metrics if k in m and _is_number(m[k])]
        if rows:
            out[k] = {"first": rows[0], "last": rows[-1]}
    return out


def loss_curve(metrics: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """``[(step, {loss term: value})]`` of every logged step (finite ``loss*`` values only)."""
    return [(int(m.get("step", 0)), {k: float(v) for k, v in m.items() if k.startswith("loss") and _is_number(v)})
            for m in metrics]


def store_curve(metrics: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """``[(step, store mean error px, store accepted share)]`` of every logged step that has both."""
    return [(int(m.get("step", 0)), float(m[STORE_KEYS[0]]), float(m[STORE_KEYS[1]])) for m in metrics
            if all(_is_number(m.get(k)) for k in STORE_KEYS)]


@dataclass
class ProtocolResults:
    """Everything the protocol measured; ``results.json`` holds :meth:`to_dict`."""

    arms: list[ArmResult]
    data: dict[str, Any]
    config: Any
    seconds: float = 0.0
    plot: str = ""
    main_cpu_s: float = 0.0
    """CPU seconds of the main process's own work (data, static fits), every invocation; runs
    (the untrained networks' evaluations included) count in their own ``cpu_s``, wherever made."""

    @property
    def cpu_s(self) -> float:
        """CPU seconds of the whole protocol (data, static fits, every run and evaluation; all
        processes, every invocation): ``main_cpu_s`` plus every run's ``cpu_s``."""
        return self.main_cpu_s + sum(a.cpu_s for a in self.arms)

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self.config) if is_dataclass(self.config) and not isinstance(self.config, type) else {}
        return {"arms": [asdict(a) for a in self.arms], "data": self.data,
                "config": json.loads(json.dumps(config, default=str)), "seconds": self.seconds,
                "cpu_s": self.cpu_s, "main_cpu_s": self.main_cpu_s, "plot": self.plot,
                "summary": self.summary(), "paired": [dict(asdict(p), win=p.win, jitter_win=p.jitter_win) for p in self.paired()],
                "paired_summary": [asdict(p) for p in self.paired_summary()]}

    def summary(self) -> list[dict[str, Any]]:
        """Per (variant, arm): runs and mean +- std (sample std, ddof 1) of test MPJPE and PA-MPJPE."""
        rows = []
        order = {"untrained": 0, "ablation": 1, "full": 2}
        keys = sorted({(a.variant, a.arm) for a in self.arms}, key=lambda k: (k[0] != "all_3d", order.get(k[1], 9)))
        for variant, arm in keys:
            runs = [a for a in self.arms if (a.variant, a.arm) == (variant, arm)]
            m = np.array([a.mpjpe for a in runs])
            pa = np.array([a.pa_mpjpe for a in runs])
            rows.append({"variant": variant, "arm": arm, "runs": len(runs), "mpjpe": float(m.mean()),
                         "mpjpe_std": _std(m), "pa_mpjpe": float(pa.mean()), "pa_mpjpe_std": _std(pa)})
        return rows

    def paired(self) -> list[PairedDifference]:
        """Full minus ablation for every (variant, data seed, training seed) that has both arms."""
        runs = {(a.variant, a.data_seed, a.seed, a.arm): a for a in self.arms}
        pairs = []
        for (variant, data_seed, seed, arm), full in sorted(runs.items()):
            ablation = runs.get((variant, data_seed, seed, "ablation"))
            if arm != "full" or ablation is None:
                continue
            noise = max(checkpoint_noise(full.curve), checkpoint_noise(ablation.curve))
            jitter = max(checkpoint_jitter(full.curve), checkpoint_jitter(ablation.curve))
            pairs.append(PairedDifference(variant, data_seed, seed, full.mpjpe - ablation.mpjpe,
                                          full.pa_mpjpe - ablation.pa_mpjpe, noise, jitter))
        return pairs

    def paired_summary(self) -> list[PairedSummary]:
        """:meth:`paired` pooled per variant (``all_3d`` first)."""
        by_variant: dict[str, list[PairedDifference]] = {}
        for p in self.paired():
            by_variant.setdefault(p.variant, []).append(p)
        out = []
        for variant in sorted(by_variant, key=lambda v: (v != "all_3d", v)):
            pairs = by_variant[variant]
            d = np.array([p.d_mpjpe for p in pairs])
            pa = np.array([p.d_pa_mpjpe for p in pairs])
            n = len(pairs)
            out.append(PairedSummary(variant, n, float(d.mean()), _std(d) / math.sqrt(n), float(pa.mean()),
                                     _std(pa) / math.sqrt(n), int((pa < 0).sum()), sum(p.win for p in pairs),
                                     sum(p.jitter_win for p in pairs)))
        return out

    def table(self) -> str:
        """The summary, the paired differences and the fits store's change, as printed text."""
        lines = ["test set, single view; mean +- std over runs (training seeds x data seeds), mm",
                 f"{'variant':<11} {'arm':<10} {'runs':>4} {'MPJPE':>15} {'PA-MPJPE':>15}"]
        for r in self.summary():
            lines.append(f"{r['variant']:<11} {r['arm']:<10} {r['runs']:>4} {r['mpjpe']:>7.1f} +- {r['mpjpe_std']:<5.1f} "
                         f"{r['pa_mpjpe']:>7.1f} +- {r['pa_mpjpe_std']:<5.1f}")
        pairs = self.paired()
        if pairs:
            lines += ["", "paired: full loop minus ablation, mm (negative: the loop is better); noise: mean |change| "
                      "of validation PA-MPJPE between checkpoints, from the middle one on (win: ahead by more than twice it); "
                      "jitter: its scatter around a local trend",
                      f"{'variant':<11} {'data':>5} {'seed':>4} {'dMPJPE':>8} {'dPA-MPJPE':>10} {'noise':>6}  win  "
                      f"{'jitter':>6}  > 2 jitter"]
            for p in pairs:
                lines.append(f"{p.variant:<11} {p.data_seed:>5} {p.seed:>4} {p.d_mpjpe:>8.1f} {p.d_pa_mpjpe:>10.1f} "
                             f"{p.noise:>6.1f}  {'yes' if p.win else 'no ':<3}  {p.jitter:>6.1f}  "
                             f"{'yes' if p.jitter_win else 'no'}")
            for q in self.paired_summary():
                lines.append(f"{q.variant:<11} over {q.pairs} pairs: dMPJPE {q.d_mpjpe:.1f} +- {q.d_mpjpe_se:.1f}, "
                             f"dPA-MPJPE {q.d_pa_mpjpe:.1f} +- {q.d_pa_mpjpe_se:.1f} (mean +- standard error); "
                             f"full loop ahead on {q.ahead}, wins on {q.wins} "
                             f"(ahead by more than twice the jitter on {q.jitter_wins})")
        full = [a for a in self.arms if a.arm == "full" and a.store_curve]
        if full:
            lines += ["", "fits store over training (full loop): mean error px, accepted share (first -> last)"]
            for a in full:
                (s0, e0, c0), (s1, e1, c1) = a.store_curve[0], a.store_curve[-1]
                lines.append(f"{a.variant:<11} data {a.data_seed:>3} seed {a.seed:>2}: error {e0:6.2f} -> {e1:6.2f} px, "
                             f"accepted {c0:.3f} -> {c1:.3f} (steps {s0}-{s1})")
        return "\n".join(lines)


def plot_results(results: ProtocolResults, path: str | Path) -> Path:
    """Three panels: validation PA-MPJPE over steps (mean line and min-max band over seeds, per
    arm and variant; the untrained networks as a dotted line), the fits store's mean error and its
    accepted share over steps (one line per full-loop run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mvspin.atomic import atomic_path

    fig, (ax_err, ax_store, ax_share) = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {"full": "tab:blue", "ablation": "tab:orange", "untrained": "tab:grey"}
    groups: dict[tuple[str, str], list[ArmResult]] = {}
    for a in results.arms:
        groups.setdefault((a.variant, a.arm), []).append(a)
    for (variant, arm), runs in sorted(groups.items()):
        style = "-" if variant == "all_3d" else "--"
        if arm == "untrained":
            ax_err.axhline(float(np.mean([r.curve[0][2] for r in runs if r.curve] or [np.nan])),
                           color=colours["untrained"], ls=":", label=f"untrained {variant} (mean)")
            continue
        steps = sorted({c[0] for r in runs for c in r.curve})
        table = np.full((len(runs), len(steps)), np.nan)
        for i, r in enumerate(runs):
            for s, _, pa in r.curve:
                table[i, steps.index(s)] = pa
        if not steps:
            continue
        mean = np.nanmean(table, 0)
        ax_err.plot(steps, mean, style, color=colours.get(arm), label=f"{arm} {variant} ({len(runs)} runs)")
        ax_err.fill_between(steps, np.nanmin(table, 0), np.nanmax(table, 0), color=colours.get(arm), alpha=0.15)
    for a in results.arms:
        if a.arm == "full" and a.store_curve:
            style = "-" if a.variant == "all_3d" else "--"
            at, error, share = zip(*a.store_curve)
            ax_store.plot(at, error, style, color=colours["full"], alpha=0.6, lw=1)
            ax_share.plot(at, share, style, color=colours["full"], alpha=0.6, lw=1)
    ax_err.set(xlabel="step", ylabel="PA-MPJPE (mm)", title="validation PA-MPJPE, single view (band: min-max)")
    ax_store.set(xlabel="step", ylabel="px (224 px crop)", title="fits store: mean reprojection error")
    ax_share.set(xlabel="step", ylabel="share", title="fits store: accepted share", ylim=(0, 1.02))
    for ax in (ax_err, ax_store, ax_share):
        ax.grid(alpha=0.3)
    ax_err.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def read_results(path: str | Path) -> ProtocolResults:
    """A ``results.json`` back as :class:`ProtocolResults` (its config kept as a plain dict)."""
    data = json.loads(Path(path).read_text())
    fields = ArmResult.__dataclass_fields__
    arms = [ArmResult(**{k: v for k, v in a.items() if k in fields}) for a in data["arms"]]
    for a in arms:
        a.curve = [(int(c[0]), float(c[1]), float(c[2])) for c in a.curve]
        a.store_curve = [(int(c[0]), float(c[1]), float(c[2])) for c in a.store_curve]
    return ProtocolResults(arms=arms, data=data.get("data", {}), config=None, seconds=data.get("seconds", 0.0),
                           plot=data.get("plot", ""), main_cpu_s=data.get("main_cpu_s", 0.0))
