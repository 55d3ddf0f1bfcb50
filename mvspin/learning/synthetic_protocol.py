"""The synthetic protocol: MV-SPIN's Table 7 comparison (fitting in the loop vs. none) on CPU.

What it runs (:func:`run`):

1. **Data** (``mvspin data synthetic``, rendered with the training body model): a training set, a
   validation set and a test set from three different seeds, hence different bodies, poses and
   cameras. The training bundles are stripped of their SMPL parameters (as Human3.6M and
   MPI-INF-3DHP in the paper: 2D keypoints and 3D joints only); a second training file keeps the
   3D joints of only a share of the bundles (SPIN's in-the-wild case: fits are the only 3D
   supervision of the rest). Validation and test keep their SMPL ground truth for evaluation.
2. **Arms**: for each training seed, the full loop (``configs/synthetic_cpu.yaml``, starting
   from static MV-SMPLify fits of the training bundles as SPIN starts from static fits) and the
   no-fitting ablation (``configs/ablation_no_fitting.yaml``) with the same steps and data; the
   same pair on the partial-3D training file; and the untrained network (the seed's
   initialisation) as the floor.
3. **Evaluation**: every checkpoint on the validation set (the curve over steps; nothing is
   chosen from it), the last one on the test set with the ``synthetic`` protocol (single view,
   every view of every bundle, MPJPE and PA-MPJPE on the 14 LSP joints).
4. **Outputs**: ``results.json`` (per arm and seed: MPJPE, PA-MPJPE, steps, wall time, the
   validation curve, the fits store's error and acceptance over training), ``protocol.png``
   (training losses and validation PA-MPJPE over steps) and a printed table.

No choice is made on the test set: the configs are fixed before the run, and the validation
split exists for any later tuning.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from mvspin.atomic import write_bytes_atomic
from mvspin.progress import Progress, no_progress

__all__ = ["SyntheticProtocolConfig", "ArmResult", "ProtocolResults", "make_protocol_data", "run", "QUICK"]

_REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class SyntheticProtocolConfig:
    """Sizes, seeds and configs of the synthetic protocol (the paper's Table 7 on CPU)."""

    full_config: str = str(_REPO_CONFIGS / "synthetic_cpu.yaml")
    """Training config (YAML of TrainConfig) of the full loop; its data.files are replaced."""
    ablation_config: str = str(_REPO_CONFIGS / "ablation_no_fitting.yaml")
    """Training config of the no-fitting ablation; its data.files are replaced."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides applied to both arms' training configs (e.g. optim.max_steps=300)."""
    train_bundles: int = 256
    """Training bundles."""
    val_bundles: int = 24
    """Validation bundles (for choosing; the test set is touched once, at the end)."""
    test_bundles: int = 64
    """Test bundles."""
    num_views: int = 4
    """Cameras per bundle."""
    image_size: int = 128
    """Rendered image side, pixels (crops are resized to the config's crop size)."""
    train_data_seed: int = 1000
    """Seed of the training set."""
    val_data_seed: int = 2000
    """Seed of the validation set."""
    test_data_seed: int = 3000
    """Seed of the test set."""
    training_seeds: list[int] = field(default_factory=lambda: [0, 1])
    """One run per arm and seed (optim.seed)."""
    partial_3d_share: float = 0.25
    """Share of training bundles keeping their 3D joints in the partial-3D variant."""
    partial_3d_seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds of the partial-3D variant (empty: skip it)."""
    val_samples: Optional[int] = None
    """Cap on validation images per checkpoint (default: all)."""
    static_fit_iterations: int = 100
    """The full arm starts from static MV-SMPLify fits of every training bundle (as SPIN starts
    from static fits) with this many iterations per stage (MV-SPIN / SPIN: 100); 0 starts from
    an empty store."""
    parallel_arms: int = 1
    """Training runs at once (separate processes started with spawn: a script calling run()
    with more than one must do so under if __name__ == "__main__")."""
    threads_per_arm: Optional[int] = None
    """Torch threads of each run (default: torch's); parallel_arms x threads_per_arm should not
    exceed the cores."""
    render: dict[str, Any] = field(default_factory=lambda: {"colors": "parts"})
    """SyntheticOptions fields changed from the capture preset for all three sets. Default:
    each body part coloured on its own (with the clothes colouring a 64 px crop shows no
    left/right or front/back cue: a network trained 600 steps on it scored worse on its own
    training set, PA-MPJPE 240 mm, than the mean pose, 139 mm)."""


QUICK: dict[str, Any] = {"train_bundles": 48, "val_bundles": 8, "test_bundles": 16, "training_seeds": [0],
         "partial_3d_seeds": [0], "overrides": ["optim.max_steps=40", "optim.checkpoint_every=20"],
         "static_fit_iterations": 50}
"""Overrides of :class:`SyntheticProtocolConfig` for ``--quick`` (a few minutes on 2 cores)."""


@dataclass
class ArmResult:
    """One trained (or untrained) network evaluated on the test set.

    Attributes:
        arm: ``"full"``, ``"ablation"`` or ``"untrained"``. variant: ``"all_3d"`` or
        ``"partial_3d"``. seed: training seed. steps: training steps. wall_s: training seconds.
        cpu_s: CPU seconds of the training process (all its threads): the cost of the run on a
        shared machine, where wall time also counts other work.
        mpjpe, pa_mpjpe: test-set means, mm. curve: ``[(step, val MPJPE, val PA-MPJPE), ...]``.
        losses: ``[(step, {term: value})]`` from the trainer's ``metrics.jsonl``.
        store: first and last logged fits-store statistics (error, acceptance), when logged.
        out_dir: the run's folder.
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


@dataclass
class ProtocolResults:
    """Everything :func:`run` measured; ``results.json`` holds :meth:`to_dict`."""

    arms: list[ArmResult]
    data: dict[str, str]
    config: SyntheticProtocolConfig
    seconds: float = 0.0
    plot: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"arms": [asdict(a) for a in self.arms], "data": self.data, "config": asdict(self.config),
                "seconds": self.seconds, "plot": self.plot}

    def table(self) -> str:
        """Test-set errors: variant, seed, then untrained / ablation / full (MPJPE, PA-MPJPE in mm)."""
        lines = [f"{'variant':<11} {'seed':>4} {'arm':<10} {'steps':>6} {'MPJPE':>8} {'PA-MPJPE':>9} {'train s':>8} "
                 f"{'CPU s':>7}"]
        order = {"untrained": 0, "ablation": 1, "full": 2}
        for a in sorted(self.arms, key=lambda a: (a.variant != "all_3d", a.seed, order.get(a.arm, 9))):
            lines.append(f"{a.variant:<11} {a.seed:>4} {a.arm:<10} {a.steps:>6} {a.mpjpe:>8.1f} {a.pa_mpjpe:>9.1f} "
                         f"{a.wall_s:>8.0f} {a.cpu_s:>7.0f}")
        return "\n".join(lines)


# --- data -----------------------------------------------------------------------------------------

def make_protocol_data(out_dir: str | Path, config: SyntheticProtocolConfig, body: Any,
                       progress: Progress = no_progress) -> dict[str, Path]:
    """Render the protocol's sets (reusing files of an earlier run with the same settings).

    Returns:
        ``{"train": no-SMPL training file, "train_partial_3d": its partial-3D copy, "val": ...,
        "test": ...}`` (val and test keep SMPL ground truth).
    """
    from mvspin.data.bundle_format import BundleFile
    from mvspin.data.derived_files import derive_bundle_file
    from mvspin.data.synthetic_capture import generate_capture_file
    from mvspin.data.synthetic_options import SyntheticOptions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = {"train_rendered": config.train_data_seed, "val": config.val_data_seed, "test": config.test_data_seed}
    if len(set(seeds.values())) != 3:
        raise ValueError(f"the training, validation and test sets need different seeds, got {seeds}")
    sizes = {"train_rendered": config.train_bundles, "val": config.val_bundles, "test": config.test_bundles}
    files: dict[str, Path] = {}
    for name, seed in seeds.items():
        path = out_dir / f"synthetic_{name}.h5"
        split = "train" if name.startswith("train") else name
        options = SyntheticOptions.preset("capture", num_views=config.num_views, image_size=(config.image_size, config.image_size),
                                 focal=360.0 * config.image_size / 224, split=split,
                                 **config.render)
        if not _same_capture(path, seed, sizes[name], options, body):
            generate_capture_file(path, sizes[name], seed=seed, options=options, body=body, progress=progress)
        files[name] = path
    train = out_dir / "synthetic_train.h5"
    partial = out_dir / "synthetic_train_partial_3d.h5"
    source_mtime = files["train_rendered"].stat().st_mtime
    for path, share in ((train, 1.0), (partial, config.partial_3d_share)):
        if not (path.is_file() and path.stat().st_mtime >= source_mtime and
                json.loads(BundleFile(path).attrs.get("derived_options", "{}")).get("joints_3d_share") == share):
            derive_bundle_file(files["train_rendered"], path, drop_smpl=True, joints_3d_share=share,
                               seed=config.train_data_seed)
    return {"train": train, "train_partial_3d": partial, "val": files["val"], "test": files["test"]}


def _same_capture(path: Path, seed: int, n: int, options: Any, body: Any) -> bool:
    from mvspin.data.bundle_format import BundleFile

    if not path.is_file():
        return False
    try:
        bf = BundleFile(path)
    except (OSError, ValueError):
        return False
    return (len(bf) == n and int(bf.attrs.get("seed", -1)) == seed and bf.attrs.get("body_model") == body.name
            and json.loads(bf.attrs.get("options", "{}")) == json.loads(json.dumps(asdict(options))))


# --- arms -----------------------------------------------------------------------------------------

def _train_config(yaml_path: str, overrides: list[str], files: list[Path], seed: int) -> Any:
    """The arm's training config: the YAML and overrides, with the protocol's files and seed."""
    from mvspin.config import load_config
    from mvspin.learning.train_config import TrainConfig, validate_train_config

    config = load_config(TrainConfig, yaml_path, overrides)
    config.data.files = [str(f) for f in files]
    config.optim.seed = int(seed)
    validate_train_config(config)
    return config


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint a run wrote (the trainer's ``checkpoints/step_*.pt``), by step."""
    folder = run_dir / "checkpoints"
    found = []
    for path in folder.glob("step_*.pt") if folder.is_dir() else []:
        match = re.fullmatch(r"step_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _store_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in ("store/mean_error", "store/mean_error_px", "store/accepted_share", "store/fitted_share",
                        "fits/accepted_share", "fits/new_error", "fits/new_error_px") if any(k in m for m in metrics)]
    out: dict[str, Any] = {}
    for k in keys:
        rows = [(int(m.get("step", 0)), float(m[k])) for m in metrics if k in m and _is_number(m[k])]
        if rows:
            out[k] = {"first": rows[0], "last": rows[-1]}
    return out


def _evaluate_model(model: Any, body: Any, data: Path, input_size: int, max_samples: Optional[int]) -> tuple[float, float]:
    from mvspin.learning.evaluation import evaluate

    result = evaluate(model, body, data, "synthetic", input_size=input_size, max_samples=max_samples)
    m = result.metrics
    return m["mpjpe"], m["pa_mpjpe"]


def _run_arm(arm: str, variant: str, seed: int, yaml_path: str, config: SyntheticProtocolConfig,
             files: dict[str, Path], body: Any, out_dir: Path, log: Callable[[str], None]) -> ArmResult:
    from mvspin.learning.trainer import train
    from mvspin.regressor.checkpoint import load_regressor_checkpoint

    train_file = files["train" if variant == "all_3d" else "train_partial_3d"]
    run_dir = out_dir / f"{variant}_{arm}_seed{seed}"
    if run_dir.exists():  # this protocol's own folder from an earlier run: start afresh
        shutil.rmtree(run_dir)
    tc = _train_config(yaml_path, config.overrides, [train_file], seed)
    if tc.fits.enabled and config.static_fit_iterations > 0:
        tc.fits.store = str(_static_fits(tc, train_file, config.static_fit_iterations, log))
    log(f"training {arm} ({variant}, seed {seed}) -> {run_dir}")
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = train(tc, run_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    curve = []
    checkpoints = _checkpoints(run_dir)
    if not checkpoints:
        raise RuntimeError(f"{run_dir}: training wrote no checkpoint")
    for step, path in checkpoints:
        model, _ = load_regressor_checkpoint(path)
        curve.append((step, *_evaluate_model(model, body, files["val"], tc.data.crop_size, config.val_samples)))
    model, _ = load_regressor_checkpoint(checkpoints[-1][1])
    mpjpe_mm, pa_mm = _evaluate_model(model, body, files["test"], tc.data.crop_size, None)
    metrics = _read_metrics(run_dir)
    losses = [(int(m.get("step", 0)), {k: float(v) for k, v in m.items() if k.startswith("loss") and _is_number(v)})
              for m in metrics]
    steps = int(summary.final_step)
    log(f"  {arm} ({variant}, seed {seed}): {steps} steps in {wall:.0f} s; test MPJPE {mpjpe_mm:.1f} mm, "
        f"PA-MPJPE {pa_mm:.1f} mm")
    return ArmResult(arm=arm, variant=variant, seed=seed, steps=steps, wall_s=wall, mpjpe=mpjpe_mm, pa_mpjpe=pa_mm,
                     curve=curve, losses=losses, store=_store_summary(metrics), out_dir=str(run_dir),
                     cpu_s=cpu)


def _static_fits(tc: Any, train_file: Path, iterations: int, log: Callable[[str], None]) -> Path:
    """Static fits of a training file (shared by the seeds; made once)."""
    from mvspin.learning.dataset_fits import fit_dataset

    path = train_file.with_name(f"{train_file.stem}_static_fits_{iterations}it.h5")
    if path.is_file() and path.stat().st_mtime >= train_file.stat().st_mtime and _readable_store(path):
        return path
    fit_config = copy.deepcopy(tc)
    fit_config.fits.store = None
    fit_config.fits.fitting.stage1_iterations = fit_config.fits.fitting.stage2_iterations = int(iterations)
    summary = fit_dataset(fit_config, path, batch_size=64)  # fits are independent: large batches are faster
    log(f"static fits of {train_file.name}: {summary.store}")
    return path


def _readable_store(path: Path) -> bool:
    """Whether an earlier run's store loads with this version (an older format is made again)."""
    from mvspin.learning.fits_store import FitsStore, FitsStoreError

    try:
        FitsStore.load(path)
    except FitsStoreError:
        return False
    return True


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _untrained(seed: int, variant: str, yaml_path: str, config: SyntheticProtocolConfig, files: dict[str, Path],
               body: Any) -> ArmResult:
    """The seed's initial network (the trainer's initialisation), evaluated like the others."""
    from mvspin.learning.trainer import build_regressor

    tc = _train_config(yaml_path, config.overrides, [files["train"]], seed)
    model = build_regressor(tc, body)
    mpjpe_mm, pa_mm = _evaluate_model(model, body, files["test"], tc.data.crop_size, None)
    val = _evaluate_model(model, body, files["val"], tc.data.crop_size, config.val_samples)
    return ArmResult(arm="untrained", variant=variant, seed=seed, steps=0, wall_s=0.0, mpjpe=mpjpe_mm,
                     pa_mpjpe=pa_mm, curve=[(0, *val)])


def run(out_dir: str | Path, config: Optional[SyntheticProtocolConfig] = None, *,
        log: Callable[[str], None] = print, progress: Progress = no_progress) -> ProtocolResults:
    """Run the whole synthetic protocol (data, arms, evaluation) and write its outputs.

    Args:
        out_dir: folder for the data, the runs, ``results.json`` and ``protocol.png``.
        config: sizes, seeds and configs (:data:`QUICK` gives a few-minute version).
        log: receives one line per stage.
        progress: :class:`~mvspin.progress.Progress` of the data rendering.

    Returns:
        the :class:`ProtocolResults` (also in ``out_dir/results.json``).
    """
    config = config or SyntheticProtocolConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Both configs are read (and checked) before any work; the body model is the training one.
    for path in (config.full_config, config.ablation_config):
        if not Path(path).is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
    body = _training_body(config)
    log(f"data: {config.train_bundles} training, {config.val_bundles} validation, {config.test_bundles} test "
        f"bundles x {config.num_views} views ({body.name}) in {out_dir / 'data'}")
    files = make_protocol_data(out_dir / "data", config, body, progress=progress)
    arms: list[ArmResult] = []
    plan = [("all_3d", s) for s in config.training_seeds] + [("partial_3d", s) for s in config.partial_3d_seeds]
    results = ProtocolResults(arms=arms, data={k: str(v) for k, v in files.items()}, config=config)
    jobs = [("untrained", "all_3d", seed, config.full_config) for seed in config.training_seeds]
    jobs += [(arm, variant, seed, yaml_path) for variant, seed in plan
             for arm, yaml_path in (("ablation", config.ablation_config), ("full", config.full_config))]
    for variant in sorted({v for v, _ in plan}):  # static fits before the runs fork (each file once)
        full = next((j for j in jobs if j[0] == "full" and j[1] == variant), None)
        tc = _train_config(config.full_config, config.overrides,
                           [files["train" if variant == "all_3d" else "train_partial_3d"]], 0)
        if full is not None and tc.fits.enabled and config.static_fit_iterations > 0:
            _static_fits(tc, Path(tc.data.files[0]), config.static_fit_iterations, log)

    def finished(result: ArmResult) -> None:
        arms.append(result)
        results.seconds = time.perf_counter() - start
        _write_results(out_dir, results)  # after every arm: an interrupted run keeps what it did

    if config.parallel_arms <= 1:
        for job in jobs:
            with _torch_threads(config.threads_per_arm):
                finished(_run_job(job, config, files, body, out_dir / "runs", log))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(config.parallel_arms, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_arm_worker, job, config, files, out_dir / "runs") for job in jobs]
            for future in futures:
                finished(future.result())
    results.plot = str(plot_results(results, out_dir / "protocol.png"))
    results.seconds = time.perf_counter() - start
    _write_results(out_dir, results)
    return results


@contextlib.contextmanager
def _torch_threads(n: Optional[int]) -> Any:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _arm_worker(job: tuple[str, str, int, str], config: SyntheticProtocolConfig, files: dict[str, Path],
                runs_dir: Path) -> ArmResult:
    """One training run in its own process (spawned: nothing inherited but the arguments)."""
    if config.threads_per_arm is not None:
        torch.set_num_threads(int(config.threads_per_arm))
    body = _training_body(config)
    return _run_job(job, config, files, body, runs_dir, lambda line: print(line, flush=True))


def _run_job(job: tuple[str, str, int, str], config: SyntheticProtocolConfig, files: dict[str, Path], body: Any,
             runs_dir: Path, log: Callable[[str], None]) -> ArmResult:
    arm, variant, seed, yaml_path = job
    if arm == "untrained":
        result = _untrained(seed, variant, yaml_path, config, files, body)
        log(f"  untrained (seed {seed}): test MPJPE {result.mpjpe:.1f} mm, PA-MPJPE {result.pa_mpjpe:.1f} mm")
        return result
    return _run_arm(arm, variant, seed, yaml_path, config, files, body, runs_dir, log)


def _training_body(config: SyntheticProtocolConfig) -> Any:
    """The body model the full arm trains with (the ablation must use the same one)."""
    from mvspin.body import BodyModel
    from mvspin.config import load_config
    from mvspin.learning.train_config import TrainConfig

    models = []
    for path in (config.full_config, config.ablation_config):
        tc = load_config(TrainConfig, path, config.overrides)  # data.files comes later
        models.append((tc.model.smpl_dir, tc.model.body_resolution if tc.model.smpl_dir is None else None))
    if models[0] != models[1]:
        raise ValueError(f"{config.full_config} and {config.ablation_config} train different body models "
                         f"({models[0]} vs {models[1]}); the comparison needs the same one")
    smpl_dir, resolution = models[0]
    return BodyModel.load(smpl_dir, resolution=resolution or "full")


def _write_results(out_dir: Path, results: ProtocolResults) -> None:
    write_bytes_atomic(out_dir / "results.json", (json.dumps(results.to_dict(), indent=2) + "\n").encode())


def plot_results(results: ProtocolResults, path: str | Path) -> Path:
    """Training loss (left) and validation PA-MPJPE (right) over steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mvspin.atomic import atomic_path

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"full": "tab:blue", "ablation": "tab:orange", "untrained": "tab:grey"}
    for a in results.arms:
        style = "-" if a.variant == "all_3d" else "--"
        label = f"{a.arm} {a.variant} s{a.seed}"
        if a.losses:
            pts = [(s, logged["loss/total"]) for s, logged in a.losses if "loss/total" in logged]
            if pts:
                ax_loss.plot(*zip(*pts), style, color=colours.get(a.arm), label=label, alpha=0.8)
        if a.arm == "untrained":
            ax_err.axhline(a.curve[0][2], color=colours["untrained"], ls=":", label=f"untrained s{a.seed}")
        elif a.curve:
            steps, _, pa = zip(*a.curve)
            ax_err.plot(steps, pa, style + "o", color=colours.get(a.arm), label=label, ms=3)
    ax_loss.set(xlabel="step", ylabel="training loss (total)", title="training loss", yscale="log")
    ax_err.set(xlabel="step", ylabel="PA-MPJPE (mm)", title="held-out (validation) PA-MPJPE, single view")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
