"""physbench task 1, stability: will a block tower fall within 2 s?

Each question is a tower of 2-6 blocks (``physworld/Tower-v0``, drawn from a held-out seed),
shown at rest. The engine's answer comes from running it for 2 s; a model answers by
*imagining*: it encodes the first observation, ``predict``\\ s 2 s of no-op steps, reads its
imagined states through its state probe, and the same :func:`fallen` rule is applied to those
states as to the engine's. Nothing is trained on the answers.

Scored beside the model: a coin flip, the majority class (of towers drawn from other seeds),
copy-last (nothing moves, so never falls), constant velocity (extrapolates the engine's own
first step), a hand-written centre-of-mass rule, and the engine itself (the oracle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from physworld.eval import html
from physworld.eval.bench.base import (
    BenchConfig,
    BenchTask,
    Row,
    TaskResult,
    TrainBudget,
    register_task,
)
from physworld.eval.bench.readout import Readout
from physworld.eval.report import animation
from physworld.eval.trajectory import (
    STATE_FIELDS,
    ModelRollout,
    Scenes,
    constant_velocity,
    encode,
    make_world,
    read_states,
)
from physworld.models import WorldModel
from physworld.worlds.tower import static_margin

WORLD = "physworld/Tower-v0"
SECONDS = 2.0  # the question: does it fall within this much simulated time?
MOVED = 1.0  # world units a block's centre must move for the tower to count as fallen (half a block)
TURNED = 0.5  # radians a block must turn for the tower to count as fallen
QUESTIONS = {False: 1000, True: 200}  # by cfg.quick
SEED_BASE = 10_000_000  # question seeds: SEED_BASE + 100_000 * cfg.seed + i (training uses 0, 1, ...)
MAJORITY_SEEDS = range(5_000_000, 5_000_200)  # towers the majority-class baseline counts labels on
CHUNK = 100  # questions per engine/model batch (bounds memory for pixel models)
READOUT_TOWERS = {False: 4000, True: 1000}  # by cfg.quick: towers the readout is fitted on
READOUT_SEED = 6_000_000  # their seeds: READOUT_SEED + i (apart from questions, majority, training)
READOUT_DECAY = 1e-4  # its L2 weight; 1e-5..1e-3 moved seed-1 validation accuracy by < 0.5 points


def fallen(states: np.ndarray, start: np.ndarray, active: np.ndarray) -> np.ndarray:
    """The one rule, for the engine's states and a model's alike: has the tower fallen?

    ``states [N, T, S]`` are the states at steps ``1..T``, ``start [N, S]`` the state they
    started from, ``active [N, n_objects]`` which slots hold a block. The tower has fallen by
    step ``t`` if at some step up to ``t`` a block's centre is more than :data:`MOVED` world
    units from where it started, or the block has turned by more than :data:`TURNED` radians
    (a block tipped against its neighbour can turn a lot while its centre barely moves).
    Returns ``[N, T]`` bool; a non-finite prediction counts as fallen (it is far from rest).
    """
    n, t = states.shape[:2]
    now = states.reshape(n, t, -1, STATE_FIELDS)
    then = start.reshape(n, 1, -1, STATE_FIELDS)
    moved = np.linalg.norm(now[..., :2] - then[..., :2], axis=-1)
    turned = np.abs(np.remainder(now[..., 4] - then[..., 4] + np.pi, 2 * np.pi) - np.pi)
    off = ~np.isfinite(moved) | ~np.isfinite(turned) | (moved > MOVED) | (turned > TURNED)
    return np.logical_or.accumulate((off & active[:, None, :]).any(-1), axis=1)


def scores(answer: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy (the mean of the two classes' recalls), with the counts.

    "falls" is the positive class. A class absent from ``truth`` is left out of the balanced
    accuracy (which is then the other class's recall).
    """
    answer, truth = np.asarray(answer, bool), np.asarray(truth, bool)
    tp, tn = int((answer & truth).sum()), int((~answer & ~truth).sum())
    fp, fn = int((answer & ~truth).sum()), int((~answer & truth).sum())
    recalls = [r for r in (tp / (tp + fn) if tp + fn else None, tn / (tn + fp) if tn + fp else None) if r is not None]
    return {
        "accuracy": (tp + tn) / max(1, len(truth)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else math.nan,
        "falls_recall": tp / (tp + fn) if tp + fn else math.nan,
        "stands_recall": tn / (tn + fp) if tn + fp else math.nan,
        "true_falls": tp, "true_stands": tn, "false_falls": fp, "false_stands": fn,
    }


@dataclass
class Questions:
    """The engine's side of the questions: first observations and 2 s of states."""

    seeds: list[int]
    obs0: np.ndarray  # [N, *obs] the observation each answer starts from
    states: np.ndarray  # [N, H+1, S] engine states, t = 0..H
    active: np.ndarray  # [N, n_objects] bool
    params: list[dict[str, Any]]  # each tower's info["params"]
    world_kwargs: dict[str, Any]
    step_seconds: float

    @property
    def horizon(self) -> int:
        return self.states.shape[1] - 1

    def falls(self) -> np.ndarray:
        """The engine's labels: fallen within the horizon."""
        return fallen(self.states[:, 1:], self.states[:, 0], self.active)[:, -1]


def question_steps(world_kwargs: dict[str, Any]) -> tuple[int, float]:
    """Env steps in :data:`SECONDS` with these world settings, and one step's length (s)."""
    probe = make_world(WORLD, world_kwargs, 1)
    step = probe.dt * probe.frame_skip
    probe.close()
    return max(1, round(SECONDS / step)), step


def ask_engine(world_kwargs: dict[str, Any], seeds: list[int], progress: bool = True) -> Questions:
    """Build each tower from its seed and run the engine for :data:`SECONDS`."""
    horizon, step = question_steps(world_kwargs)
    env = make_world(WORLD, world_kwargs, horizon)
    noop = np.zeros(env.action_space.shape, np.float32)
    obs0, states, active, params = [], [], [], []
    for seed in tqdm(seeds, desc="stability: engine", unit="tower", leave=False, disable=not progress):
        obs, info = env.reset(seed=seed)
        run = [info["state"]]
        for _ in range(horizon):
            run.append(env.step(noop)[-1]["state"])
        obs0.append(obs)
        states.append(np.stack(run))
        active.append(np.arange(env.n_objects) < info["n_objects"])
        params.append(info["params"])
    kwargs = {**world_kwargs, "max_steps": env.max_steps}
    return Questions(list(seeds), np.stack(obs0), np.stack(states), np.stack(active), params, kwargs, step)


def check_model(model: WorldModel, task: BenchTask) -> None:
    """Refuse, by name, a model this task cannot ask."""
    c = model.config
    if c.world != WORLD:
        raise ValueError(
            f"the stability task needs a model trained on {WORLD}, got one trained on {c.world or 'an unknown world'}"
            " (physworld bench --train trains one)"
        )
    if not task.fits(model):
        raise ValueError(f"the model was trained on {WORLD} with other settings than the task's {task.world_kwargs}")
    if c.action_dim != 1:
        raise ValueError(f"{WORLD} takes a 1-D no-op action; the model was trained with action_dim {c.action_dim}")
    probe = getattr(model, "probe", None)
    if probe is None or not bool(probe.fitted):
        raise ValueError("the model has no fitted state probe, so its imagined towers cannot be read (train with --probe-steps > 0)")


def question_kwargs(model: WorldModel, task: BenchTask) -> dict[str, Any]:
    """The task's world settings, observed the way the model sees (obs kind, image size, time step)."""
    trained = model.config.world_kwargs
    kwargs = {**task.world_kwargs, "obs": model.config.obs_kind}
    if model.config.obs_kind == "pixels":
        kwargs["image_size"] = int(model.config.obs_shape[-1])
    for key in ("dt", "frame_skip"):  # one model step must be one env step
        if key in trained:
            kwargs[key] = trained[key]
    return kwargs


@torch.no_grad()
def imagine(model: WorldModel, q: Questions, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The model's imagined 2 s from each first observation, read through its probe.

    Returns ``(start [N, S], states [N, H, S])``: the probe's reading of the encoded first
    observation (what the model thinks it was shown) and of each predicted step.
    """
    model.eval()
    device = next(model.parameters()).device
    starts, rollouts = [], []
    for lo in tqdm(range(0, len(q.seeds), CHUNK), desc="stability: model", unit="batch", leave=False, disable=not progress):
        z0 = encode(model, q.obs0[lo : lo + CHUNK], CHUNK)
        noop = torch.zeros(len(z0), q.horizon, model.config.action_dim, device=device)
        z = model.predict(z0, noop)
        starts.append(read_states(model, z0, CHUNK))
        rollouts.append(read_states(model, z.flatten(0, 1), CHUNK).reshape(len(z0), q.horizon, -1))
    return np.concatenate(starts), np.concatenate(rollouts)


def readout_features(start: np.ndarray, imagined: np.ndarray) -> np.ndarray:
    """``[N, S]`` start and ``[N, H, S]`` imagined readings -> ``[N, (H+1) * S]`` features.

    Non-finite readings (a diverged rollout) become a large value, i.e. far from rest.
    """
    x = np.concatenate([start[:, None], imagined], 1).reshape(len(start), -1)
    return np.nan_to_num(x, nan=1e3, posinf=1e3, neginf=-1e3).clip(-1e3, 1e3).astype(np.float32)


def fit_readouts(model: WorldModel, world_kwargs: dict[str, Any], quick: bool) -> tuple[Readout, Readout]:
    """The readout on the encoded tower + its imagined rollout, and the one on the tower alone,
    both fitted on the engine's labels of :data:`READOUT_TOWERS` towers of their own seeds."""
    towers = ask_engine(world_kwargs, [READOUT_SEED + i for i in range(READOUT_TOWERS[quick])])
    start, imagined = imagine(model, towers)
    falls = towers.falls()
    return (Readout(readout_features(start, imagined), falls, READOUT_DECAY),
            Readout(start, falls, READOUT_DECAY))


@torch.no_grad()
def probe_on_truth(model: WorldModel, q: Questions) -> np.ndarray | None:
    """The probe read on the engine's own states (state models only): the rule's error with no
    prediction at all, i.e. the probe's share of the model's mistakes."""
    if model.config.obs_kind != "state":
        return None
    flat = q.states.reshape(-1, q.states.shape[-1])
    read = read_states(model, encode(model, flat, 4096), 4096).reshape(q.states.shape)
    return fallen(read[:, 1:], read[:, 0], q.active)[:, -1]


def constant_velocity_answers(q: Questions) -> np.ndarray:
    """Extrapolate each block at the velocity the engine gives it after its first step."""
    one = q.states[:, 1:]
    scenes = Scenes(
        world=WORLD, world_kwargs=q.world_kwargs, seeds=q.seeds, obs=one, states=one, active=q.active,
        actions=np.zeros((len(q.seeds), q.horizon - 1, 1), np.float32), arena_size=10.0, step_seconds=q.step_seconds,
    )
    path = np.concatenate([one[:, :1], constant_velocity(scenes)], axis=1)  # steps 1..H
    return fallen(path, q.states[:, 0], q.active)[:, -1]


def statics_answers(q: Questions) -> np.ndarray:
    """The centre-of-mass rule on the first state, with the true block sizes and masses."""
    out = []
    for s0, p in zip(q.states[:, 0], q.params, strict=True):
        xs = s0.reshape(-1, STATE_FIELDS)[: p["n_blocks"], 0]
        out.append(static_margin(xs, p["block_width"], p["block_mass"]) <= 0)
    return np.asarray(out, bool)


@register_task
class Stability(BenchTask):
    name = "stability"
    title = "Stability (physical reasoning)"
    world = WORLD
    world_kwargs = {"n_blocks": (2, 6)}
    reference = (
        "Physion (Bear et al., 2021), Towers scenario, a different task (3-D scenes, rendered video): "
        "humans about 76%, the best vision model about 74%. Context only, not like for like."
    )
    target = ">= 90% accuracy"

    def budget(self, quick: bool) -> TrainBudget:
        """Windows and rollout loss as long as the question (2 s, 15 steps), which is answered
        open loop from rest: a shorter rollout loss leaves the late steps, where a slow topple
        crosses the rule's threshold, untrained."""
        steps = question_steps(self.world_kwargs)[0]
        horizon = {"window": steps, "extra": {"rollout_steps": steps}}
        if quick:
            return TrainBudget(episodes=1000, steps=600, probe_steps=500, **horizon)
        return TrainBudget(episodes=3000, steps=3000, probe_steps=1000, **horizon)

    def run(self, model: WorldModel, cfg: BenchConfig) -> TaskResult:
        check_model(model, self)
        n = QUESTIONS[cfg.quick]
        seeds = [SEED_BASE + 100_000 * cfg.seed + i for i in range(n)]
        q = ask_engine(question_kwargs(model, self), seeds)
        truth = q.falls()
        start, imagined = imagine(model, q)
        readout, readout_start = fit_readouts(model, q.world_kwargs, cfg.quick)
        answers = {
            "model_readout": readout(readout_features(start, imagined)),
            "model": fallen(imagined, start, q.active)[:, -1],
            "model_readout_start": readout_start(start),
        }
        oracle = ask_engine({**q.world_kwargs, "obs": "state"}, seeds, progress=False)
        majority = bool(np.mean(ask_engine({**q.world_kwargs, "obs": "state"}, list(MAJORITY_SEEDS), progress=False).falls()) > 0.5)
        coin = np.random.default_rng(cfg.seed).random(n) < 0.5
        answers |= {
            "chance": coin,
            "majority": np.full(n, majority),
            "copy_last": np.zeros(n, bool),
            "constant_velocity": constant_velocity_answers(q),
            "statics": statics_answers(q),
            "engine_oracle": oracle.falls(),
        }
        truth_probe = probe_on_truth(model, q)
        if truth_probe is not None:
            answers["model_probe_on_truth"] = truth_probe
        results = {name: scores(a, truth) for name, a in answers.items()}
        n_blocks = np.array([p["n_blocks"] for p in q.params])
        margins = np.array([p["static_margin"] for p in q.params])
        details = {
            "questions": n,
            "seeds": [seeds[0], seeds[-1]],
            "horizon_steps": q.horizon,
            "step_seconds": q.step_seconds,
            "falls_fraction": float(truth.mean()),
            "majority_answer": "falls" if majority else "stands",
            "rule": {"moved_world_units": MOVED, "turned_radians": TURNED, "seconds": SECONDS},
            "world_kwargs": q.world_kwargs,
            "methods": results,
            "readout": {"towers": READOUT_TOWERS[cfg.quick], "seeds": READOUT_SEED, "l2": READOUT_DECAY},
            "model_by_blocks": by_group(answers["model_readout"], truth, n_blocks),
            "model_by_margin": by_group(answers["model_readout"], truth, margin_bins(margins)),
            "rollout_by_margin": by_group(answers["model"], truth, margin_bins(margins)),
        }
        rows = [
            Row(LABELS[name], 100 * results[name]["accuracy"], kind,
                f"balanced accuracy {100 * results[name]['balanced_accuracy']:.1f}%")
            for name, kind in ROW_KINDS.items()
        ]
        return TaskResult(
            task=self.name, metric="accuracy (%)", rows=rows, reference=self.reference, target=self.target,
            details=details, sections=sections(details, q, imagined, answers, truth),
        )


LABELS = {
    "model_readout": "model (readout of its imagined 2 s: logistic regression fitted on other towers)",
    "model": "model (imagined 2 s rollout; the fall rule on its probe's readings)",
    "chance": "chance (coin flip)",
    "majority": "majority class",
    "copy_last": "copy last state (never falls)",
    "constant_velocity": "constant velocity (from the engine's first step)",
    "statics": "centre-of-mass rule (hand-written statics, true sizes)",
    "engine_oracle": "engine (oracle)",
    "model_probe_on_truth": "model probe on the engine's states (diagnostic)",
    "model_readout_start": "readout of the encoded tower alone, nothing imagined (diagnostic)",
}
ROW_KINDS = {
    "model_readout": "model", "model": "model", "chance": "baseline", "majority": "baseline", "copy_last": "baseline",
    "constant_velocity": "baseline", "statics": "baseline", "engine_oracle": "oracle",
}
MARGIN_EDGES = (-math.inf, -0.5, -0.2, -0.05, 0.0, 0.05, 0.2, 0.5, math.inf)


def margin_bins(margins: np.ndarray) -> np.ndarray:
    """Each tower's static-margin bin as a label (negative: past an edge)."""
    names = [f"[{lo:g}, {hi:g})" for lo, hi in zip(MARGIN_EDGES, MARGIN_EDGES[1:], strict=False)]
    return np.array([names[i] for i in np.digitize(margins, MARGIN_EDGES[1:-1])])


def by_group(answer: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, float]]:
    return {str(g): {"count": int((groups == g).sum()), **scores(answer[groups == g], truth[groups == g])} for g in np.unique(groups)}


def pct(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def sections(details, q: Questions, imagined, answers, truth) -> list[str]:
    """The report: every method's scores, the model by tower height and by margin, and a few
    towers animated engine | model."""
    m = details["methods"]
    header = ["answered by", "accuracy", "balanced accuracy", "falls caught", "stands caught"]
    method_rows = [[LABELS[k], pct(v["accuracy"]), pct(v["balanced_accuracy"]), pct(v["falls_recall"]), pct(v["stands_recall"])] for k, v in m.items()]

    def group_table(title: str, groups: dict) -> str:
        rows = [[g, v["count"], pct(v["accuracy"]), pct(v["balanced_accuracy"])] for g, v in groups.items()]
        return html.table([title, "towers", "model accuracy", "balanced"], rows)

    rule = (
        f"{details['questions']} towers from held-out seeds {details['seeds'][0]}..{details['seeds'][1]}; "
        f"{100 * details['falls_fraction']:.1f}% fall. A tower has fallen within {SECONDS:g} s "
        f"({q.horizon} steps of {q.step_seconds:.4g} s) if a block's centre moves more than {MOVED:g} "
        f"world units or a block turns more than {TURNED:g} rad; the rule reads the engine's states for "
        "the truth and the model's probe readings of its own imagined rollout (no-op actions, from the "
        "encoded first observation) for its answer. The readout answers from the same readings with a "
        f"logistic regression fitted on the engine's labels of {details['readout']['towers']} towers of "
        "other seeds; the tables by blocks and by margin are the readout's. Constant velocity sees the engine's first step; "
        "the centre-of-mass rule knows the block sizes and masses; the majority class is counted on "
        f"{len(MAJORITY_SEEDS)} other towers ({details['majority_answer']})."
    )
    picks = pick_examples(answers["model"], truth)
    anim = ""
    if picks:
        sub = Scenes(
            world=WORLD, world_kwargs={**q.world_kwargs, "obs": "state"}, seeds=[q.seeds[i] for i in picks],
            obs=q.states[picks], actions=np.zeros((len(picks), q.horizon, 1), np.float32),
            states=q.states[picks],
            active=q.active[picks], arena_size=10.0, step_seconds=q.step_seconds,
        )
        roll = ModelRollout(states=imagined[picks], probe_on_truth=imagined[picks], frames=None)
        figs = [
            html.image_tag(
                animation(sub, roll, j),
                f"seed {q.seeds[i]}: engine {'falls' if truth[i] else 'stands'}, model says {'falls' if answers['model'][i] else 'stands'}",
                mime="image/gif",
            )
            for j, i in enumerate(picks)
        ]
        anim = html.paragraph("Left: the engine. Right: the model's imagined rollout, read by its probe and drawn by the world's renderer.", note=True) + "".join(figs)
    return [
        html.section(
            "Stability: will the tower fall within 2 s?",
            html.paragraph(rule, note=True),
            html.table(header, method_rows),
            group_table("blocks", details["model_by_blocks"]),
            group_table("static margin (world units)", details["model_by_margin"]),
            anim,
        )
    ]


def pick_examples(model: np.ndarray, truth: np.ndarray, count: int = 4) -> list[int]:
    """A few towers to animate: right and wrong answers, both classes, where there are any."""
    picks: list[int] = []
    for want_truth, want_right in ((True, True), (False, True), (True, False), (False, False)):
        hits = np.flatnonzero((truth == want_truth) & ((model == truth) == want_right))
        if len(hits) and len(picks) < count:
            picks.append(int(hits[0]))
    return picks
