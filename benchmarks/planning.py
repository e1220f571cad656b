"""Planning on Push with a JEPA trained on a small budget: success rate and milliseconds per plan.

    python benchmarks/planning.py [--model PATH] [--obs state] [--threads 2] [--out runs/bench-planning]

Stages (each skipped when its output exists, or with --model):
1. collect Push episodes (policy "mixed": half noisy expert, half smooth random, so the data
   holds purposeful pushes) into OUT/data;
2. train a JEPA on them (``physworld.train``) into OUT/run;
3. diagnose the model: probe error on the current frame and open-loop error per step, for the
   agent and the block, against the engine (the two things planning depends on);
4. run every planner for --episodes goals with the MPC loop (random policy and expert beside it);
5. sweep CEM's samples x iterations: success against milliseconds per planning call;
6. optionally (--oracle N) plan with the true physics as the "model", to tell planner and cost
   failures from model failures.

Writes OUT/benchmark.json and OUT/report.html. Target: >= 90% success at <= 50 ms per planning call
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="runs/bench-planning", help="folder for data, run, results")
parser.add_argument("--model", default=None, help="reuse this checkpoint (or run folder) instead of training")
parser.add_argument("--obs", choices=["state", "pixels"], default="state", help="observation kind to train on")
parser.add_argument("--data-episodes", type=int, default=1200, help="episodes collected for training")
parser.add_argument("--train-steps", type=int, default=6000, help="JEPA optimizer steps")
parser.add_argument("--jepa", default='{"predictor": "mlp", "latent_dim": 32, "critic": "vicreg", "rollout_steps": 8, "recon_weight": 1.0}',
                    help="JEPAConfig overrides as JSON (state reconstruction: 84%% -> 100%% CEM success, README)")
parser.add_argument("--train", default='{"window": 10, "batch_size": 64, "probe_frames": 60000, "probe_steps": 4000}',
                    help="TrainConfig overrides as JSON")
parser.add_argument("--episodes", type=int, default=50, help="planning episodes (goals) per planner")
parser.add_argument("--planners", default="cem,mppi,gradient")
parser.add_argument("--horizon", type=int, default=10)
parser.add_argument("--sweep-samples", default="16,32,64,128")
parser.add_argument("--sweep-iterations", default="1,3")
parser.add_argument("--sweep-episodes", type=int, default=20)
parser.add_argument("--oracle", type=int, default=0, help="episodes planned with the true physics (slow: ~20 s each)")
parser.add_argument("--threads", type=int, default=2,
                    help="threads for torch/BLAS; on a machine shared with other jobs use 1 (OpenMP threads wait on each other)")
args = parser.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from physworld.data import CollectConfig, collect  # noqa: E402
from physworld.eval import html  # noqa: E402
from physworld.eval.planning import PlanConfig, evaluate_planning  # noqa: E402
from physworld.eval.report import versions, write_json  # noqa: E402
from physworld.models import JEPAConfig  # noqa: E402
from physworld.models.base import ModelConfig, WorldModel  # noqa: E402
from physworld.plan import load_planning_model, make_planner, run_mpc  # noqa: E402
from physworld.plan.planners import as_model_obs  # noqa: E402
from physworld.runtime import set_threads  # noqa: E402

WORLD = "physworld/Push-v0"
SEED = 20_000_000  # planning goals: far from the collection seeds


def train_model(out: Path) -> tuple[Path, float]:
    """Collect and train unless done already; returns the run folder and the training seconds."""
    from physworld.train import TrainConfig, train

    data = out / "data"
    if not data.is_dir():
        collect(CollectConfig(world=WORLD, episodes=args.data_episodes, out=data, policy="mixed", obs=args.obs,
                              num_envs=1, vector="sync"))
    run = out / "run"
    started = time.perf_counter()
    cfg = TrainConfig(data=str(data), out=str(run), steps=args.train_steps, threads=args.threads,
                      jepa=JEPAConfig(**json.loads(args.jepa)), progress=False, **json.loads(args.train))
    train(cfg)
    return run, time.perf_counter() - started


@torch.no_grad()
def diagnose(model: WorldModel, horizon: int, scenes: int = 40) -> dict:
    """Probe error now and open-loop error per step (world units), agent and block, on expert
    pushes from held-out scenes; beside how far the block really moved."""
    env = gym.make(WORLD, **{**model.config.world_kwargs, "obs": model.config.obs_kind})
    rng = np.random.default_rng(0)
    now, agent, block, moved = [], [], [], []
    for i in range(scenes):
        obs, info = env.reset(seed=SEED + 10_000 + i)
        for _ in range(rng.integers(0, 25)):  # somewhere inside an expert episode, pushes included
            obs, *_, info = env.step(env.unwrapped.expert_action())
        start, actions, states = info["state"], [], []
        x = as_model_obs(model, obs, torch.device("cpu"))[0]
        for _ in range(horizon):
            actions.append(env.unwrapped.expert_action())
            *_, info = env.step(actions[-1])
            states.append(info["state"])
        z = model.encode(x)
        read = model.read_state(torch.cat([z, model.predict(z, torch.as_tensor(np.stack(actions))[None])[0]]))
        pos, true = read.numpy().reshape(-1, 2, 6)[..., :2], np.stack([start, *states]).reshape(-1, 2, 6)[..., :2]
        err = np.linalg.norm(pos - true, axis=-1)
        now.append(err[0])
        agent.append(err[1:, 0])
        block.append(err[1:, 1])
        moved.append(np.linalg.norm(true[1:, 1] - true[0, 1], axis=-1))
    r = lambda a: np.round(np.mean(a, 0), 3).tolist()  # noqa: E731
    return {"probe_error_now": dict(zip(["agent", "block"], r(now), strict=True)), "agent_error_per_step": r(agent),
            "block_error_per_step": r(block), "block_true_displacement": r(moved)}


def plan(model: WorldModel, path: Path, name: str, episodes: int, baselines: bool, **kw) -> dict:
    cfg = PlanConfig(model=path, planner=name, episodes=episodes, horizon=args.horizon, baselines=baselines,
                     threads=args.threads, seed=SEED, animations=4, **kw)
    return evaluate_planning(cfg, model)


class Oracle(WorldModel):
    """The true physics behind the WorldModel contract (latent = state; predict runs pymunk for
    every candidate). Slow, but it answers: would the planner and cost succeed with a perfect model?"""

    def __init__(self, sim: gym.Env):
        c = ModelConfig(family="oracle", obs_kind="state", obs_shape=(12,), action_dim=2, action_low=[-1, -1],
                        action_high=[1, 1], state_dim=12, world=WORLD, arena_size=10.0)
        super().__init__(c)
        self.sim = sim.unwrapped

    def encode(self, obs):
        return obs.float()

    def read_state(self, z):
        return z

    def predict(self, z, actions):
        u, out = self.sim, np.zeros((len(z), actions.shape[1], 12), np.float32)
        for b in range(len(z)):
            for body, row in zip(u.bodies, z[b].numpy().reshape(2, 6), strict=True):
                body.position, body.velocity = tuple(row[:2].tolist()), tuple(row[2:4].tolist())
                body.angle, body.angular_velocity = float(row[4]), float(row[5])
                u.space.reindex_shapes_for_body(body)
            for t in range(actions.shape[1]):
                for _ in range(u.frame_skip):
                    u._control(actions[b, t].numpy())
                    u.space.step(u.dt)
                out[b, t] = u._read_state()
        return torch.from_numpy(out)


def oracle(episodes: int, **kw) -> dict:
    env, sim = gym.make(WORLD, obs="state"), gym.make(WORLD, obs="state")
    out = {}
    for label, shaping in (("block distance only", {"approach": 0.0}), ("+ agent to block", {"approach": 1.0, "approach_offset": 0.0}),
                           ("+ agent to pushing spot (default)", {})):
        wins = []
        for i in range(episodes):
            sim.reset(seed=SEED + i)  # the oracle's copy of the episode (same block, goal)
            planner = make_planner("cem", Oracle(sim), horizon=args.horizon, seed=0, **shaping, **kw)
            wins += [e.success for e in run_mpc([env], planner, [SEED + i], 100)]
        out[label] = float(np.mean(wins))
        print(f"oracle, {label}: {100 * out[label]:.0f}% of {episodes}")
    return out


def main() -> None:
    threads = set_threads(args.threads)
    out = Path(args.out)
    results: dict = {"settings": vars(args), "versions": versions(), "load_average_at_start": os.getloadavg()}
    if args.model:
        model_path, train_s = Path(args.model), None
    else:
        model_path, train_s = train_model(out)
    results["train_seconds"] = train_s
    model = load_planning_model(model_path)
    results["model"] = {"path": str(model_path), "config": asdict(model.config)}
    for state in (model_path / "train_state" / "state.json", model_path.parent / "train_state" / "state.json"):
        if state.is_file():
            results["model"]["probe"] = json.loads(state.read_text()).get("probe")
    results["diagnosis"] = diagnose(model, args.horizon)
    print("model:", json.dumps(results["diagnosis"]))

    sections, results["planners"] = [], {}
    for i, name in enumerate(args.planners.split(",")):
        p = plan(model, model_path, name, args.episodes, baselines=i == 0)
        results["planners"][name] = p.results["controllers"]
        print(p.results["headline"])
        sections += p.sections if i == 0 else p.sections[:1]

    rows, results["sweep"] = [], []
    for samples in map(int, args.sweep_samples.split(",")):
        for iterations in map(int, args.sweep_iterations.split(",")):
            r = plan(model, model_path, "cem", args.sweep_episodes, baselines=False, samples=samples, iterations=iterations).results
            c = r["controllers"]["cem"]
            keys = ("success_rate", "plan_ms_median", "plan_ms_p95", "plan_cpu_ms_median")
            results["sweep"].append({"samples": samples, "iterations": iterations, **{k: c[k] for k in keys}})
            rows.append([samples, iterations, f"{100 * c['success_rate']:.0f}%", *(c[k] for k in keys[1:])])
            print(f"CEM {samples:4d} x {iterations}: {100 * c['success_rate']:5.1f}% success, {c['plan_ms_median']:.1f} ms "
                  f"(p95 {c['plan_ms_p95']:.1f}, CPU {c['plan_cpu_ms_median']:.1f})")
    sections.append(html.section(
        "Success against planning time (CEM)",
        html.table(["samples", "iterations", "success", "ms median", "ms p95", "CPU ms median"], rows),
        html.paragraph(f"{args.sweep_episodes} goals per row, horizon {args.horizon}, {threads} threads.", note=True),
    ))
    d = results["diagnosis"]
    sections.insert(0, html.section(
        "The model, against the engine (world units)",
        html.table(["", "now (probe)", *(f"step {t + 1}" for t in range(args.horizon))], [
            ["agent error", d["probe_error_now"]["agent"], *d["agent_error_per_step"]],
            ["block error", d["probe_error_now"]["block"], *d["block_error_per_step"]],
            ["block really moved", 0.0, *d["block_true_displacement"]],
        ]),
        html.paragraph("Open-loop from the encoded frame under expert pushes, read through the probe.", note=True),
    ))
    if args.oracle:
        results["oracle"] = oracle(args.oracle)
        sections.append(html.section(
            "The same planner with the true physics as the model (CEM)",
            html.table(["cost", "success"], [[k, f"{100 * v:.0f}%"] for k, v in results["oracle"].items()]),
            html.paragraph(f"{args.oracle} goals: tells planner and cost failures from model failures.", note=True),
        ))
    results["load_average_at_end"] = os.getloadavg()
    write_json(out / "benchmark.json", results)
    html.write_page(out / "report.html", "physworld planning benchmark", sections)
    print(f"wrote {out / 'benchmark.json'} and {out / 'report.html'}")


if __name__ == "__main__":
    main()
