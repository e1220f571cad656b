"""physbench task 2, Mini-PHYRE: where should the red ball go so that green comes to touch blue?

A question is one scene of ``physworld/MiniPhyre-v0`` (a template instantiated from a held-out
seed) with a fixed, seeded list of :data:`CANDIDATES` valid red-ball placements. A model answers
by *imagining* each candidate: it encodes the scene with the ball placed, ``predict``\\ s the
whole episode with no-op actions, reads its imagined states through its state probe, and ranks
the candidates by the smallest imagined green-blue gap (gap = centre distance minus the two
radii; the closest call first). The candidates are then tried in the engine in that order, and
PHYRE's AUCCESS scores how soon one succeeds (:func:`auccess`).

The first model row ranks instead by a readout, as PHYRE's learned baselines score actions with
a network fitted on training tasks' outcomes: a small classifier (one hidden layer) on the
candidate's placement and a summary of its imagined episode (:func:`imagined_outcome`: did red
reach green, where did green go, did blue move), fitted on the engine's outcomes of every
candidate in :data:`READOUT_SCENES` scenes per trained template (other seeds than any question).
The same readout on the placement alone, with no model, is a baseline (the learned placement
prior): the gap between the two is what the imagined episode adds.

Within-template questions come from the templates the model was trained on (new seeds);
cross-template questions from the rest, which the model never saw. Questions that no candidate
solves are skipped (every PHYRE task is solvable), so the engine oracle (candidates that succeed
first) scores 100 by construction. Baselines: chance (the exact expectation over random orders),
and a hand rule, "drop it nearest the green ball first". Copy-last and constant velocity rank
nothing here: every scene starts at rest, so both imagine no motion at all and tie every
candidate (they equal chance). Each candidate's outcome is simulated once and reused by every
ranking, so all methods are scored on the same engine outcomes.
"""

from __future__ import annotations

import time
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
from physworld.eval.report import side_by_side
from physworld.eval.trajectory import encode, read_states
from physworld.models import WorldModel
from physworld.plan.planners import check_probe
from physworld.worlds.base import object_positions
from physworld.worlds.phyre import (
    BLUE,
    BLUE_RADIUS,
    GREEN,
    GREEN_RADIUS,
    N_BARS,
    RED,
    RED_RADIUS,
    TEMPLATES,
    MiniPhyre,
)

WORLD = "physworld/MiniPhyre-v0"
TRAIN_TEMPLATES = (0, 1, 2, 3)  # the task's training templates; 4 and 5 are held out (cross-template)
CANDIDATES = 100  # placements per question, as PHYRE's 100 attempts
QUESTIONS = {False: 12, True: 4}  # per template, by cfg.quick
SEED_BASE = 30_000_000  # question seeds: SEED_BASE + 100_000 * cfg.seed + 10_000 * template + i
MAX_TRIES = 10  # seeds tried per wanted question before giving up on solvable ones
READOUT_SCENES = {False: 48, True: 12}  # per trained template, by cfg.quick: scenes the readout is fitted on
READOUT_SEED = 31_000_000  # their seeds: READOUT_SEED + 10_000 * template + i (apart from questions, training)
READOUT_HIDDEN = 64  # the readouts' hidden width: success is a bounded region of placements, not a half-space
READOUT_DECAY = 3e-5  # their L2 weight: the best of 1e-5..1e-3 for both in 4-fold cross-validation over readout scenes
FAR = 20.0  # world units (the scene is 10 wide): what a diverged rollout's distances read as


def auccess_weights(attempts: int = CANDIDATES) -> np.ndarray:
    """PHYRE's weights ``w_k = log(k + 1) - log(k)``, ``k = 1..attempts``: early attempts count most."""
    k = np.arange(1, attempts + 1, dtype=np.float64)
    return np.log(k + 1) - np.log(k)


def auccess(curves: np.ndarray) -> float:
    """AUCCESS (0-100) from per-question success curves ``[Q, attempts]``.

    ``curves[q, k - 1]`` is the (probability that) question ``q`` is solved within ``k``
    attempts; PHYRE averages it over questions into ``s_k`` and reports
    ``100 * sum_k w_k s_k / sum_k w_k``.
    """
    curves = np.asarray(curves, np.float64)
    if curves.ndim != 2 or not len(curves):
        raise ValueError(f"auccess needs success curves of shape [questions, attempts], got {curves.shape}")
    w = auccess_weights(curves.shape[1])
    return float(100 * (curves.mean(0) * w).sum() / w.sum())


def ranked_curve(order: np.ndarray, solved: np.ndarray) -> np.ndarray:
    """Success curve of trying candidates in ``order``: 1 from the first solving attempt on."""
    return np.logical_or.accumulate(np.asarray(solved, bool)[np.asarray(order)]).astype(np.float64)


def chance_curve(solved: np.ndarray) -> np.ndarray:
    """Expected success curve of a uniformly random order: ``1 - C(n-m, k) / C(n, k)``."""
    n, m = len(solved), int(np.sum(solved))
    k = np.arange(1, n + 1)
    # probability that the first k attempts all miss, as a running product (no huge binomials)
    miss = np.cumprod(np.clip((n - m - k + 1) / (n - k + 1), 0.0, 1.0))
    return 1.0 - miss


@dataclass
class Question:
    template: int
    seed: int
    placements: np.ndarray  # [K, 2] the candidates, in their fixed (seeded) order
    solved: np.ndarray  # [K] the engine's outcome of each candidate
    start: np.ndarray  # [K, S] the scene with each candidate placed (the model's starting state)
    green: np.ndarray  # [2] the green ball's starting position


def make_env(templates: tuple[int, ...], **kwargs: Any) -> MiniPhyre:
    return MiniPhyre(templates=templates, obs="state", **kwargs)


def simulate(env: MiniPhyre, seed: int, placement: np.ndarray) -> tuple[np.ndarray, bool]:
    """One attempt in the engine: states ``[T+1, S]`` and whether green touched blue."""
    _, info = env.reset(seed=seed, options={"placement": placement})
    states = [info["state"]]
    for _ in range(env.max_steps):
        _, _, _, truncated, info = env.step(np.zeros(1, np.float32))
        states.append(info["state"])
        if truncated:
            break
    return np.stack(states), bool(info["is_success"])


def make_questions(templates: tuple[int, ...], count: int, first_seed: int, bar: Any = None) -> tuple[list[Question], int]:
    """``count`` solvable questions per template (seeds ``first_seed + 10_000 * template + i``),
    and how many unsolvable seeds were skipped."""
    out, skipped = [], 0
    for t in templates:
        env = make_env((t,))
        found = 0
        for i in range(count * MAX_TRIES):
            if found == count:
                break
            seed = first_seed + 10_000 * t + i
            _, info = env.reset(seed=seed)
            placements = env.sample_placements(CANDIDATES, np.random.default_rng(seed))
            runs = [simulate(env, seed, p) for p in placements]
            solved = np.array([ok for _, ok in runs])
            if not solved.any():
                skipped += 1
                continue
            start = np.stack([states[0] for states, _ in runs])
            green = object_positions(info["state"], env.n_objects)[GREEN].copy()
            out.append(Question(t, seed, placements, solved, start, green))
            found += 1
            if bar is not None:
                bar.update(1)
        env.close()
    return out, skipped


@torch.no_grad()
def imagine(model: WorldModel, question: Question, horizon: int) -> np.ndarray:
    """The model's imagined states ``[K, horizon + 1, S]`` for every candidate of ``question``
    (step 0 is the probe's reading of the given scene)."""
    obs = question.start
    if model.config.obs_kind == "pixels":  # draw each placed scene as the world would show it
        render = MiniPhyre(templates=(question.template,), obs="pixels", image_size=model.config.obs_shape[-1])
        render.reset(seed=question.seed)
        obs = np.stack([render.render_state(s) for s in question.start])
    z = encode(model, obs, batch_size=CANDIDATES)
    actions = torch.zeros(len(z), horizon, model.config.action_dim, device=z.device)
    pred = model.predict(z, actions)
    seq = torch.cat([z[:, None], pred], 1)
    states = read_states(model, seq.flatten(0, 1), batch_size=4096)
    return states.reshape(len(z), horizon + 1, -1)


def gaps(states: np.ndarray) -> np.ndarray:
    """Green-blue gap (centre distance minus the radii) at every step ``[K, T, S] -> [K, T]``."""
    pos = object_positions(states, states.shape[-1] // 6)
    return np.linalg.norm(pos[..., GREEN, :] - pos[..., BLUE, :], axis=-1) - (GREEN_RADIUS + BLUE_RADIUS)


def min_gap(states: np.ndarray) -> np.ndarray:
    """Smallest green-blue gap over the steps ``[K, T, S] -> [K]`` (non-finite: never touches)."""
    gap = gaps(states)
    return np.where(np.isfinite(gap), gap, np.inf).min(-1)


def placement_features(q: Question) -> np.ndarray:
    """What a candidate is, in its scene: the red ball's placement relative to the green ball,
    and their distance ``[K, 3]``."""
    rel = q.placements - q.green
    return np.concatenate([rel, np.linalg.norm(rel, axis=-1, keepdims=True)], -1)


def imagined_outcome(states: np.ndarray) -> np.ndarray:
    """What an episode ``[K, T, S]`` did, in the terms that decide a question ``[K, 8]``: the
    smallest green-blue gap, red's closest approach to green, green's displacement at the end
    and its farthest excursion, green's offset from blue at the end, and blue's farthest
    excursion (blue moves when something hits it).

    Read by the readout rather than the gap alone: an imagined episode can be right that red
    knocks green toward blue and still be a few tenths of a unit off where they meet.
    """
    pos = object_positions(states, states.shape[-1] // 6)
    red, green, blue = pos[..., RED, :], pos[..., GREEN, :], pos[..., BLUE, :]
    red_green = np.linalg.norm(red - green, axis=-1) - (RED_RADIUS + GREEN_RADIUS)
    moved = green - green[:, :1]
    summary = np.concatenate([
        gaps(states).min(-1, keepdims=True),
        red_green.min(-1, keepdims=True),
        moved[:, -1],
        np.linalg.norm(moved, axis=-1).max(-1, keepdims=True),
        green[:, -1] - blue[:, -1],
        np.linalg.norm(blue - blue[:, :1], axis=-1).max(-1, keepdims=True),
    ], -1)
    # a diverged rollout reads as far apart and far gone, never as NaN
    return np.nan_to_num(summary, nan=FAR, posinf=FAR, neginf=-FAR).clip(-FAR, FAR)


def readout_features(placed: np.ndarray, imagined: np.ndarray) -> np.ndarray:
    """The placement features and the imagined episode's outcome ``[K, 3 + 8]``."""
    return np.concatenate([placed, imagined_outcome(imagined)], -1)


def fit_readouts(model: WorldModel, templates: tuple[int, ...], horizon: int, quick: bool) -> tuple[Readout, Readout]:
    """Two readouts fitted on the engine's outcomes of every candidate in scenes of the model's
    own templates (other seeds than any question): one reads the placement and the imagined
    episode, the other the placement alone (a learned placement prior, no model)."""
    scenes, _ = make_questions(templates, READOUT_SCENES[quick], READOUT_SEED)
    solved = np.concatenate([q.solved for q in scenes])
    placed = [placement_features(q) for q in scenes]
    imagined = np.concatenate([readout_features(p, imagine(model, q, horizon))
                               for p, q in tqdm(zip(placed, scenes, strict=True), total=len(scenes),
                                                desc="phyre: readout scenes", leave=False)])
    return (Readout(imagined, solved, READOUT_DECAY, READOUT_HIDDEN),
            Readout(np.concatenate(placed), solved, READOUT_DECAY, READOUT_HIDDEN))


def check_model(model: WorldModel) -> None:
    """Refuse models that cannot answer: another world, another action size, no state probe."""
    c = model.config
    if c.world != WORLD:
        raise ValueError(
            f"Mini-PHYRE needs a model trained on {WORLD}, but this one was trained on {c.world or 'an unknown world'!r} "
            "(train one with physworld bench --train)"
        )
    n_state = 6 * (3 + N_BARS)
    if c.action_dim != 1:
        raise ValueError(f"{WORLD} takes a 1-D no-op action; the model was trained with action_dim {c.action_dim}")
    if c.state_dim != n_state:
        raise ValueError(f"the model's state probe reads {c.state_dim} values, {WORLD} has {n_state}")
    try:
        check_probe(model)
    except ValueError as err:
        raise ValueError(f"Mini-PHYRE reads the imagined positions through the state probe: {err}") from None


@register_task
class MiniPhyreTask(BenchTask):
    name = "phyre"
    title = "Mini-PHYRE (physical reasoning with action)"
    world = WORLD
    # focus: half the training placements land near the green ball, where the collisions that
    # decide a question happen (questions themselves use uniform candidates)
    world_kwargs = {"templates": list(TRAIN_TEMPLATES), "focus": 0.5}
    reference = (
        "PHYRE-B (ball tier, 25 templates, 100 attempts; Bakhtin et al. 2019; Qi et al. 2021), AUCCESS "
        "within-template / cross-template: DQN 77.6 / 36.8, RPIN 85.2 / 42.2. Context only: PHYRE's "
        "scenes, templates and physics are not these."
    )
    target = ">= 80 within-template AUCCESS"

    def budget(self, quick: bool) -> TrainBudget:
        """Random placements (the candidates' own distribution), whole 60-step episodes cut into
        windows; the rollout loss spans the window, since questions are answered open loop."""
        if quick:
            return TrainBudget(episodes=600, steps=1000, window=12, probe_steps=500, extra={"rollout_steps": 12})
        return TrainBudget(episodes=3000, steps=4000, window=12, probe_steps=1000, extra={"rollout_steps": 12})

    def run(self, model: WorldModel, cfg: BenchConfig) -> TaskResult:
        check_model(model)
        model.eval()
        trained = tuple(int(t) for t in model.config.world_kwargs.get("templates", TEMPLATES))
        held_out = tuple(t for t in TEMPLATES if t not in trained)
        count = QUESTIONS[cfg.quick]
        first_seed = SEED_BASE + 100_000 * cfg.seed
        tick = time.perf_counter()
        with tqdm(total=count * len(TEMPLATES), desc="phyre: engine, 100 attempts per question", leave=False) as bar:
            within, skip_w = make_questions(trained, count, first_seed, bar)
            cross, skip_c = make_questions(held_out, count, first_seed, bar)
        engine_s = time.perf_counter() - tick
        horizon = make_env(trained).max_steps
        readout, prior = fit_readouts(model, trained, horizon, cfg.quick)

        answers: dict[str, dict[str, Any]] = {}
        model_ms = []
        for split, questions in (("within", within), ("cross", cross)):
            for q in tqdm(questions, desc=f"phyre: model ranks ({split})", leave=False):
                tick = time.perf_counter()
                imagined = imagine(model, q, horizon)
                model_ms.append(1000 * (time.perf_counter() - tick))
                placed = placement_features(q)
                order = np.argsort(-readout.logits(readout_features(placed, imagined)), kind="stable")
                answers[f"{split}/{q.seed}"] = {
                    "model": ranked_curve(order, q.solved),
                    "model_gap": ranked_curve(np.argsort(min_gap(imagined), kind="stable"), q.solved),
                    "heuristic": ranked_curve(np.argsort(placed[:, -1], kind="stable"), q.solved),  # nearest first
                    "prior": ranked_curve(np.argsort(-prior.logits(placed), kind="stable"), q.solved),
                    "chance": chance_curve(q.solved),
                    "oracle": ranked_curve(np.argsort(~q.solved, kind="stable"), q.solved),
                    "order": order,
                }
        details = self._details(within, cross, answers, model_ms, engine_s, skip_w + skip_c, trained, held_out, cfg)
        rows = self._rows(details, model)
        sections = [self._section(details, model), self._animations(model, within, cross, answers, horizon)]
        return TaskResult(
            task=self.name, metric="AUCCESS (0-100)", rows=rows, reference=self.reference, target=self.target,
            details=details, sections=sections,
        )

    # --- scoring and reporting ---------------------------------------------------------------
    def _details(self, within, cross, answers, model_ms, engine_s, skipped, trained, held_out, cfg) -> dict[str, Any]:
        methods = ("model", "model_gap", "chance", "heuristic", "prior", "oracle")
        out: dict[str, Any] = {
            "templates": {t: TEMPLATES[t][0] for t in TEMPLATES},
            "trained_templates": list(trained), "held_out_templates": list(held_out),
            "candidates": CANDIDATES, "skipped_unsolvable": skipped,
            "success_definition": "the engine reports a contact between the green and blue balls within the episode "
            "(PHYRE: contact held for 3 s)",
            "model_ms_per_question_median": float(np.median(model_ms)) if model_ms else None,
            "engine_ms_per_question": 1000 * engine_s / max(1, len(within) + len(cross)),
            "seed": cfg.seed, "quick": cfg.quick,
            "readout": {"scenes_per_template": READOUT_SCENES[cfg.quick], "seed": READOUT_SEED, "l2": READOUT_DECAY,
                        "hidden": READOUT_HIDDEN},
        }
        for split, questions in (("within", within), ("cross", cross)):
            curves = {m: np.stack([answers[f"{split}/{q.seed}"][m] for q in questions]) for m in methods} if questions else {}
            out[split] = {
                "questions": len(questions),
                "auccess": {m: auccess(c) for m, c in curves.items()},
                "success_at_1": {m: float(100 * c[:, 0].mean()) for m, c in curves.items()},
                "solve_rate": float(100 * np.mean([q.solved.mean() for q in questions])) if questions else None,
                "per_template": {
                    TEMPLATES[t][0]: {
                        "questions": int(sum(q.template == t for q in questions)),
                        "solve_rate": float(100 * np.mean([q.solved.mean() for q in questions if q.template == t])),
                        **{m: auccess(c[[q.template == t for q in questions]]) for m, c in curves.items()},
                    }
                    for t in sorted({q.template for q in questions})
                },
            }
        return out

    def _rows(self, d: dict[str, Any], model: WorldModel) -> list[Row]:
        who = model.config.family or "model"
        names = {
            "model": (f"{who} (readout of the imagined episode)", "model",
                      "a one-hidden-layer classifier on the placement and the imagined episode's outcome, fitted on other scenes"),
            "model_gap": (f"{who} (imagined outcome)", "model", "min imagined green-blue gap first"),
            "chance": ("chance", "baseline", "expected over random orders; copy-last and constant velocity tie every candidate, so equal this"),
            "heuristic": ("nearest to green first", "baseline", "hand rule"),
            "prior": ("learned placement prior", "baseline", "the readout on the placement alone, no model"),
            "oracle": ("engine oracle", "oracle", "engine outcome first"),
        }
        rows = []
        for method, (label, kind, note) in names.items():
            for split in ("within", "cross"):
                if d[split]["questions"]:
                    value = d[split]["auccess"][method]
                    rows.append(Row(f"{label}, {split}-template", value, kind, f"{note}; {d[split]['questions']} questions"))
        return rows

    def _section(self, d: dict[str, Any], model: WorldModel) -> str:
        rows = []
        for split in ("within", "cross"):
            for name, r in d[split]["per_template"].items():
                rows.append([split, name, r["questions"], f"{r['solve_rate']:.1f}%", r["model"], r["model_gap"], r["chance"],
                             r["heuristic"], r["prior"], r["oracle"]])
        intro = html.paragraph(
            f"Each question: {CANDIDATES} seeded red-ball placements; the model imagines each one's episode and they "
            "are tried in the engine in the order of a readout (a one-hidden-layer classifier on the placement and the "
            "imagined episode's outcome: red's closest approach to green, green's displacement, its final offset from "
            f"blue, the smallest green-blue gap, blue's excursion), fitted on the engine's outcomes in {d['readout']['scenes_per_template']} "
            "other scenes per trained template), or of the smallest imagined gap. The learned placement prior is the "
            "same readout without the model. Trained templates "
            f"{[TEMPLATES[t][0] for t in d['trained_templates']]}, held out {[TEMPLATES[t][0] for t in d['held_out_templates']]}. "
            f"Success: {d['success_definition']}. {d['skipped_unsolvable']} unsolvable scenes were skipped. "
            f"Ranking {CANDIDATES} candidates takes the model {d['model_ms_per_question_median'] or 0:.0f} ms per question "
            f"(median); simulating them takes the engine {d['engine_ms_per_question']:.0f} ms."
        )
        compared = ("model", "model_gap", "chance", "heuristic", "prior", "oracle")
        headers = ["model readout", "min imagined gap", "chance", "nearest to green", "placement prior", "oracle"]
        s1 = html.table(
            ["split", *headers],
            [[s, *(f"{d[s]['success_at_1'][m]:.0f}%" for m in compared)] for s in ("within", "cross") if d[s]["questions"]],
        )
        return html.section(
            self.title, intro,
            html.table(["split", "template", "questions", "solve rate", *headers], rows),
            html.paragraph("Solved on the first attempt:"), s1,
        )

    def _animations(self, model, within, cross, answers, horizon) -> str:
        """For a few questions: the engine running the model's first choice | what the model imagined."""
        figures = []
        for split, questions in (("within", within[:3]), ("cross", cross[:2])):
            for q in questions:
                a = answers[f"{split}/{q.seed}"]
                top = int(a["order"][0])
                env = make_env((q.template,), max_steps=horizon)
                states, ok = simulate(env, q.seed, q.placements[top])
                single = Question(q.template, q.seed, q.placements[top : top + 1], q.solved[top : top + 1], q.start[top : top + 1], q.green)
                imagined = imagine(model, single, horizon)[0]
                env.reset(seed=q.seed, options={"placement": q.placements[top]})
                frames = [side_by_side([env.render_state(s), env.render_state(p)]) for s, p in zip(states, imagined, strict=False)]
                caption = f"{split}: {TEMPLATES[q.template][0]} (seed {q.seed}), first choice {'succeeds' if ok else 'fails'}"
                figures.append(html.image_tag(html.gif(frames[::2], fps=8, scale=2), caption, mime="image/gif"))
                env.close()
        note = html.paragraph("Left: the engine running the model's first-ranked placement. Right: the model's imagined "
                              "rollout of it (probe states drawn by the world's renderer).", note=True)
        return html.section("Mini-PHYRE: the model's first choices", note, *figures)


__all__ = ["MiniPhyreTask", "auccess", "auccess_weights", "chance_curve", "ranked_curve"]
