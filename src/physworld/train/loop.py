"""One training loop for every model family.

``train(cfg)`` opens the dataset, builds (or loads) the model and calls ``fit``; ``fit(model,
windows, cfg)`` is the loop itself and takes any object with
``.batches(batch_size, seed, rank, world_size[, start])``, so tests can feed synthetic windows.

What the loop guarantees:

- AdamW, linear warm-up then cosine decay, gradient clipping, optional bf16 autocast;
- deterministic on CPU for a given seed, on one process;
- ``out/model/`` (safetensors + config.json, via ``model.save``) and ``out/train_state/``
  (weights, optimizer, scheduler, step, RNG states; the data position is the step) are written
  atomically every ``checkpoint_every`` steps; re-running the same command resumes from them and
  stops at the same step count, even after SIGKILL;
- a non-finite loss stops the run with the step in the message, leaving the last good
  checkpoint untouched;
- the same code runs under ``torchrun`` (see :mod:`physworld.train.distributed`).
"""

from __future__ import annotations

import fcntl
import inspect
import itertools
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from physworld.models import JEPAConfig, WorldModel, load_model, model_class
from physworld.models.base import atomic_folder, recover_folder
from physworld.models.diffusion import DiffusionConfig
from physworld.models.probe import fit_probe
from physworld.models.rnn import RNNConfig
from physworld.runtime import seed_everything, set_threads
from physworld.train import distributed
from physworld.train.distributed import DistContext

STATE_DIR, MODEL_DIR = "train_state", "model"


@dataclass
class TrainConfig:
    """Train a world model on a collected dataset (``physworld train --data DATA``)."""

    data: str = ""  # dataset folder written by `physworld collect`
    model: str = "jepa"  # model family, by registry name
    steps: int = 2000  # optimizer steps in total (a resumed run stops at the same count)
    batch_size: int = 32  # global batch: windows per step, split evenly over data-parallel ranks
    window: int = 6  # actions per training window (T); each window holds T+1 frames
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.05  # AdamW decay, on weight matrices only
    warmup: int = 100  # linear warm-up steps before the cosine decay
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    bf16: bool = False  # bfloat16 autocast (CPU or GPU); see benchmarks/train_throughput.py
    seed: int = 0
    threads: int = 2  # intra-op CPU threads per process
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    out: str = "runs/jepa"  # run folder: model/, train_state/, metrics.jsonl
    checkpoint_every: int = 250  # steps between checkpoints (always one at the end)
    log_every: int = 20  # steps between log lines / TensorBoard points
    probe_steps: int = 1000  # state-probe fitting steps after training (0: no probe)
    probe_frames: int = 8192  # frames (one per window) encoded to fit the probe
    val_fraction: float = 0.1  # episodes held out to measure the probe's error
    tensorboard: bool = False  # also log to out/tb (needs the `tensorboard` package)
    progress: bool = True  # tqdm progress bar
    init: str | None = None  # fine-tune from this checkpoint folder instead of a fresh model
    config: str | None = None  # YAML file of defaults for these options (flags override it)
    jepa: JEPAConfig = field(default_factory=JEPAConfig)  # JEPA options (--model jepa)
    rnn: RNNConfig = field(default_factory=RNNConfig)  # VAE + MDN-RNN options (--model rnn)
    diffusion: DiffusionConfig = field(
        default_factory=DiffusionConfig
    )  # diffusion options (--model diffusion)
    # Another family's options go in a field named after it ("-" -> "_"), typed by its config
    # class; without one, that family trains with its config defaults.


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


# --- configuration --------------------------------------------------------------------------


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a (nested) dataclass from a plain dict, refusing unknown keys by name."""
    defaults = cls()
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        nested = is_dataclass(default) and isinstance(value, dict)
        kwargs[name] = config_from_dict(type(default), value) if nested else value
    return cls(**kwargs)


def parse_config(args: Sequence[str] | None = None) -> TrainConfig:
    """Parse ``physworld train`` flags with tyro; ``--config file.yaml`` supplies the defaults.

    The YAML file mirrors the flags (``steps: 500``, ``jepa: {critic: vicreg}``); flags given on
    the command line override it.
    """
    import tyro
    import yaml

    args = list(sys.argv[1:] if args is None else args)
    default = TrainConfig()
    for i, arg in enumerate(args):
        path = None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        if path:
            values = yaml.safe_load(Path(path).read_text()) or {}
            default = config_from_dict(TrainConfig, {**values, "config": path})
    return tyro.cli(TrainConfig, args=args, default=default)


def data_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig fields a dataset's metadata determines."""
    shape = tuple(meta["obs_shape"])
    if meta["obs"] == "pixels":  # stored [H, W, C]; models take channels first
        shape = (shape[2], shape[0], shape[1])
    return {
        "obs_kind": meta["obs"],
        "obs_shape": shape,
        "action_dim": int(meta["action_dim"]),
        "action_low": list(meta.get("action_low", [])),
        "action_high": list(meta.get("action_high", [])),
        "state_dim": int(meta.get("state_dim", 0)),
        "world": meta.get("world", ""),
        "world_kwargs": dict(meta.get("world_kwargs", {})),
        "arena_size": float(meta.get("arena_size", 1.0)),
    }


def check_compatible(model: WorldModel, meta: dict[str, Any], where: str) -> None:
    """Refuse data a loaded model cannot read, naming both sides."""
    want = data_fields(meta)
    for key in ("action_dim", "obs_kind", "obs_shape", "state_dim"):
        have = getattr(model.config, key)
        if have != want[key]:
            raise ValueError(
                f"the dataset's {key} is {want[key]} but the model at {where} was trained with "
                f"{have} (data from {meta.get('world', '?')}, model from {model.config.world or '?'})"
            )


def build_model(cfg: TrainConfig, meta: dict[str, Any]) -> WorldModel:
    """A fresh model of family ``cfg.model`` shaped by the dataset, or ``cfg.init`` loaded."""
    if cfg.init:
        model = load_model(cfg.init)
        check_compatible(model, meta, cfg.init)
        return model.train()
    cls = model_class(cfg.model)
    family_cfg = getattr(cfg, cfg.model.replace("-", "_"), None)  # e.g. cfg.jepa
    if not isinstance(family_cfg, cls.config_class):
        family_cfg = cls.config_class()
    return cls(replace(family_cfg, family=cfg.model, **data_fields(meta)))


# --- the entry points -----------------------------------------------------------------------


def train(cfg: TrainConfig) -> Path:
    """Train ``cfg.model`` on ``cfg.data``, resuming from ``cfg.out`` if a run is there.

    Returns the ``out/model`` checkpoint folder (load it with ``physworld.models.load_model``).
    """
    from physworld.data import DatasetError, EpisodeStore, Windows

    ctx = distributed.setup(cfg.device)
    try:
        set_threads(cfg.threads)
        if not cfg.data:
            raise ValueError("no dataset given: pass --data DATASET_FOLDER")
        store = EpisodeStore.open(cfg.data)
        if not store.episodes or store.total_steps == 0:
            raise ValueError(f"dataset {cfg.data} is empty")
        train_store, val_store = store, None
        if cfg.val_fraction > 0 and len(store.episodes) >= 2:
            train_store, val_store = store.split(cfg.val_fraction, seed=cfg.seed)
        windows = Windows(train_store, cfg.window)
        try:
            val = Windows(val_store, cfg.window) if val_store is not None else None
        except DatasetError:  # held-out episodes shorter than a window: fall back to in-sample
            val = None
        seed_everything(cfg.seed)
        model = build_model(cfg, store.meta)
        return fit(model, windows, cfg, eval_windows=val)
    finally:
        distributed.cleanup(ctx)


def fit(model: WorldModel, windows: Any, cfg: TrainConfig, eval_windows: Any | None = None) -> Path:
    """The training loop: ``model`` on ``windows`` for ``cfg.steps`` steps; returns out/model.

    If ``cfg.out`` holds a train state, the run resumes from it (the model's weights are
    replaced by the checkpointed ones).
    """
    ctx = distributed.setup(cfg.device)
    run = None
    try:
        set_threads(cfg.threads)
        run = _Run(model, windows, cfg, ctx, eval_windows)
        return run.run()
    finally:
        if run is not None:
            run.release()
        distributed.cleanup(ctx)


# --- the loop -------------------------------------------------------------------------------


def read_metrics(run: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.jsonl`` (training logs, then the probe's row)."""
    path = Path(run) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def training_seconds(run: str | os.PathLike, batch_size: int) -> float:
    """Time spent in optimizer steps, from the loop's own samples/s log: exact across resumes (a
    resumed run drops the lines written after its last checkpoint), probe fit not included."""
    seconds, previous = 0.0, 0
    for row in read_metrics(run):
        if "samples_per_s" in row:
            seconds += (row["step"] - previous) * batch_size / row["samples_per_s"]
            previous = row["step"]
    return seconds


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices/kernels only (not biases, norms, embeddings' offsets)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def _batches(
    windows: Any, batch_size: int, cfg: TrainConfig, ctx: DistContext, start: int
) -> Iterator[dict[str, Tensor]]:
    """This rank's batches from position ``start`` (skipped by iteration if not supported)."""
    kwargs = {"rank": ctx.rank, "world_size": ctx.world_size}
    if "start" in inspect.signature(windows.batches).parameters:
        return iter(windows.batches(batch_size, cfg.seed, start=start, **kwargs))
    return itertools.islice(windows.batches(batch_size, cfg.seed, **kwargs), start, None)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def _jsonable(config: Any) -> Any:
    return json.loads(json.dumps(asdict(config)))


class _Run:
    """The state of one training run (a class only to keep the loop body short)."""

    def __init__(
        self, model: WorldModel, windows: Any, cfg: TrainConfig, ctx: DistContext, eval_windows: Any
    ):
        if cfg.batch_size % ctx.world_size:
            raise ValueError(
                f"--batch-size {cfg.batch_size} is not divisible by {ctx.world_size} ranks"
            )
        if hasattr(windows, "__len__") and len(windows) == 0:
            raise ValueError("the training data holds no windows (empty dataset?)")
        self.cfg, self.ctx, self.windows, self.eval_windows = cfg, ctx, windows, eval_windows
        self.out = Path(cfg.out)
        self._lock()
        self.model = model.to(ctx.device).train()
        self.local_batch = cfg.batch_size // ctx.world_size
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
        )
        self.step, self.probe_metrics = 0, None
        self.last_saved = None
        state = self._load_state()
        self.batches = _batches(windows, self.local_batch, cfg, ctx, self.step)
        self.first = self._next_batch() if self.step < cfg.steps else None
        if self.first is not None:
            self._check_batch(self.first)
            if state is None and not cfg.init:  # a fine-tuned model keeps its normalisation
                self.model.calibrate(self.first)
        self.net = (
            DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
            if ctx.distributed
            else self.model
        )

    def _lock(self) -> None:
        """One run per folder: rank 0 holds an exclusive lock (the OS drops it if we die)."""
        self.lock = None
        if not self.ctx.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock = open(self.out / ".lock", "w")  # noqa: SIM115  (held for the whole run)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            raise RuntimeError(
                f"another training run is writing to {self.out}; wait for it or use another --out"
            ) from None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()

    # --- data -------------------------------------------------------------------------------
    def _next_batch(self) -> dict[str, Tensor]:
        try:
            batch = next(self.batches)
        except StopIteration:
            raise ValueError("the training data yielded no batches (empty dataset?)") from None
        return {k: v.to(self.ctx.device, non_blocking=True) for k, v in batch.items()}

    def _check_batch(self, batch: dict[str, Tensor]) -> None:
        c = self.model.config
        if batch["actions"].shape[-1] != c.action_dim:
            raise ValueError(
                f"the data's actions have dimension {batch['actions'].shape[-1]} but the model "
                f"expects {c.action_dim} (model trained on {c.world or 'unknown world'})"
            )
        shape = tuple(batch["obs"].shape[2:])
        if shape != tuple(c.obs_shape):
            raise ValueError(
                f"the data's observations are {shape} but the model expects {tuple(c.obs_shape)}"
            )

    # --- checkpoints --------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any] | None:
        folder = recover_folder(self.out / STATE_DIR)
        if not folder.is_dir():
            return None
        try:
            info = json.loads((folder / "state.json").read_text())
            weights = load_file(folder / "model.safetensors", device=str(self.ctx.device))
            trainer = torch.load(
                folder / "trainer.pt", map_location="cpu", weights_only=True
            )  # RNG states live on the CPU
        except Exception as err:
            raise ValueError(
                f"cannot resume: the train state in {folder} is damaged ({type(err).__name__}: {err}); "
                "delete it to start over, or use another --out"
            ) from err
        now = _jsonable(self.model.config)
        # a run saved before a config field existed holds that field's default: fill it in first
        saved = _jsonable(type(self.model.config).from_dict(info["model_config"]))
        moot = {"probe_input"}  # filled in by the probe step, after the run started
        if self.model.latent_map() is None:  # only a latent map is read by the spatial probe
            moot.add("probe_spatial")
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in moot)
        if diff:
            raise ValueError(
                f"{self.out} holds a run of a different model (differs in: {', '.join(diff)}); "
                "use another --out to start a new run"
            )
        if saved.get("probe_input") and getattr(self.model, "probe", None) is None:
            self.model.attach_probe(saved["probe_input"])  # a family whose probe fit_probe attached
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        _set_rng_state(trainer["rng"])
        self.step, self.probe_metrics = info["step"], info.get("probe")
        self.last_saved = self.step
        if self.ctx.is_main and self.step < self.cfg.steps:
            print(f"resuming {self.out} from step {self.step}", file=sys.stderr)
            self._forget_logs_after(self.step)
        return info

    def _save(self) -> None:
        """Rank 0 writes the train state, then the model: both atomically."""
        if not self.ctx.is_main:
            return
        with atomic_folder(self.out / STATE_DIR) as tmp:
            save_file(
                {k: v.contiguous() for k, v in self.model.state_dict().items()},
                tmp / "model.safetensors",
            )
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": _rng_state(),
                },
                tmp / "trainer.pt",
            )
            info = {
                "step": self.step,
                "data_position": self.step,  # batches each rank has consumed (Windows.batches start=)
                "probe": self.probe_metrics,
                "model_config": _jsonable(self.model.config),
                "train_config": _jsonable(self.cfg),
            }
            (tmp / "state.json").write_text(json.dumps(info, indent=2))
        self.model.save(self.out / MODEL_DIR)
        self.last_saved = self.step

    # --- logging ------------------------------------------------------------------------------
    def _open_logs(self) -> None:
        self.writer = None
        if not self.ctx.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "tb"))
            except ImportError:
                print(
                    "tensorboard is not installed: logging to metrics.jsonl only", file=sys.stderr
                )

    def _forget_logs_after(self, step: int) -> None:
        """Drop log lines a killed run wrote after its last checkpoint: they are re-run now."""
        path = self.out / "metrics.jsonl"
        if path.is_file():
            lines = [
                line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step
            ]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in lines))
            tmp.replace(path)

    def _log(self, metrics: dict[str, float]) -> None:
        if not self.ctx.is_main:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **metrics}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, self.step)

    # --- the loop -----------------------------------------------------------------------------
    def _check_finite(self, what: str, value: Tensor) -> None:
        """Stop before a NaN/inf reaches the weights; nothing is saved, so the last checkpoint stays good."""
        if not torch.isfinite(value):
            where = (
                f"step {self.last_saved} in {self.out}"
                if self.last_saved is not None
                else "none written yet"
            )
            raise TrainingDiverged(
                f"{what} became {value.item()} at step {self.step}; stopped without saving "
                f"(last good checkpoint: {where}). Try a lower --lr or --grad-clip."
            )

    def run(self) -> Path:
        cfg, ctx = self.cfg, self.ctx
        self._open_logs()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (ctx.is_main and cfg.progress),
            dynamic_ncols=True,
        )
        if cfg.bf16 and ctx.device.type == "cpu" and ctx.is_main and not cpu_has_bf16():
            print(
                "warning: --bf16 on a CPU without native bfloat16 (no AVX512-BF16 or AMX): it is "
                "emulated and measured 5-20x slower than fp32 (benchmarks/train_throughput.py)",
                file=sys.stderr,
            )
        autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        tick, tick_step, batch = time.perf_counter(), self.step, self.first
        while self.step < cfg.steps:
            batch = batch if batch is not None else self._next_batch()
            with autocast:
                out = self.net(batch, step=self.step)
            loss = distributed.mean_over_ranks(out["loss"].detach().float())
            self._check_finite("loss", loss)
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(
                params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            )
            self._check_finite("gradient norm", grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.model.on_step_end()
            self.step += 1
            batch = None

            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                sps = (self.step - tick_step) * cfg.batch_size / (now - tick)
                tick, tick_step = now, self.step
                metrics = {k: float(v.detach()) for k, v in out.items() if v.numel() == 1}
                metrics.update(
                    loss=float(loss),
                    lr=self.scheduler.get_last_lr()[0],
                    grad_norm=float(grad_norm),
                    samples_per_s=sps,
                )
                self._log(metrics)
                bar.set_postfix(
                    loss=f"{float(loss):.4f}",
                    rank=f"{metrics.get('eff_rank', 0):.1f}",
                    sps=f"{sps:.0f}",
                )
            bar.update(1)
            if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self._save()
        bar.close()
        self._finish()
        return self.out / MODEL_DIR

    def _finish(self) -> None:
        """Fit the state probe (rank 0) and write the final checkpoint, unless already done."""
        cfg, fresh_probe = self.cfg, False
        wants_probe = cfg.probe_steps > 0 and self.model.config.state_dim > 0
        if self.ctx.is_main and wants_probe and self.probe_metrics is None:
            self.probe_metrics = fit_probe(
                self.model,
                self.windows,
                steps=cfg.probe_steps,
                frames=cfg.probe_frames,
                batch_size=self.local_batch,
                seed=cfg.seed,
                eval_windows=self.eval_windows,
            )
            self._log(self.probe_metrics)
            print(
                "state probe: " + ", ".join(f"{k}={v:.4g}" for k, v in self.probe_metrics.items()),
                file=sys.stderr,
            )
            fresh_probe = True
        if fresh_probe or self.last_saved != self.step or not (self.out / MODEL_DIR).is_dir():
            self._save()
        distributed.barrier(self.ctx)
        if self.writer is not None:
            self.writer.close()
