"""Train in the dream: a linear controller on [z, h], optimised by CMA-ES inside a learned
VAE + MDN-RNN world model of Push, then run in the real world beside a random policy.

    python examples/rnn_cmaes_dream.py                                   # collect, train, evolve, test
    python examples/rnn_cmaes_dream.py --model runs/families/push-rnn/model   # reuse a trained model

The recipe of Ha & Schmidhuber (2018), on physworld's shared pieces only:

1. V and M: ``physworld.train`` trains ``--model rnn`` on pixel Push data (both stages, one run);
2. C: ``a = tanh(W [z, h, goal] + b)``, a few hundred numbers, evolved by CMA-ES (``cma``) where
   every fitness evaluation is a batch of episodes in ``physworld/Dream-v0`` (the dream
   environment: reset from a real first frame, then only the model's ``predict``; the reward is
   Push's own, minus the block-goal distance, read through the state probe). Dreams are sampled
   at ``--temperature`` (the paper's trick against a controller that exploits a too-certain model);
3. the best controller then drives the real Push env, the model's memory following the real
   frames (``model.observe``), on held-out seeds; a uniformly random policy is run on the same seeds.

No real-world transition is used to choose the controller: only to train V and M.
"""

from __future__ import annotations

import argparse
import os
import sys

_threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if _threads is None and "--threads" in sys.argv[:-1]:
    _threads = sys.argv[sys.argv.index("--threads") + 1]
os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = _threads or "2"

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cma  # noqa: E402
import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import physworld  # noqa: E402, F401  (registers the worlds)
from physworld.data import CollectConfig, collect  # noqa: E402
from physworld.models import load_model  # noqa: E402
from physworld.models.rnn import RNNConfig, RNNWorldModel  # noqa: E402
from physworld.plan import DreamVectorEnv  # noqa: E402
from physworld.runtime import set_threads  # noqa: E402
from physworld.train import TrainConfig, train  # noqa: E402

WORLD = "physworld/Push-v0"
TEST_SEED = 10_000_000  # held out from collection (seeds 0..episodes-1) and from the dream's resets


class LinearController:
    """``a = tanh(W [z, h, goal] + b)`` with the goal scaled to [-1, 1]; ``c`` (the LSTM cell) is not read."""

    def __init__(self, model: RNNWorldModel):
        c = model.config
        self.z_h, self.arena, self.action_dim = c.latent_dim + c.hidden, c.arena_size, c.action_dim
        self.inputs = self.z_h + 2

    @property
    def size(self) -> int:
        return self.action_dim * (self.inputs + 1)

    def features(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.concatenate([state[:, : self.z_h], 2 * goal / self.arena - 1], 1)

    def act(self, params: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``params [N, size]`` (one controller per row) and ``features [N, inputs]`` -> actions."""
        w = params[:, : -self.action_dim].reshape(len(params), self.action_dim, self.inputs)
        return np.tanh(np.einsum("nai,ni->na", w, features) + params[:, -self.action_dim :]).astype(np.float32)


def dream_returns(env: DreamVectorEnv, ctrl: LinearController, params: np.ndarray, seeds: list[int], horizon: int) -> np.ndarray:
    """Mean dream return of every controller in ``params [P, size]`` over the same reset seeds."""
    p, e = len(params), len(seeds)
    rows = np.repeat(params, e, axis=0)  # env i runs controller i // e on seed i % e
    obs, _ = env.reset(seed=[s for _ in range(p) for s in seeds])
    total, alive = np.zeros(p * e), np.ones(p * e, bool)
    for _ in range(horizon):
        obs, reward, terminated, truncated, _ = env.step(ctrl.act(rows, ctrl.features(obs[:, :-2], obs[:, -2:])))
        total += reward * alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    return total.reshape(p, e).mean(1)


@torch.no_grad()
def real_episode(model: RNNWorldModel, ctrl: LinearController | None, params: np.ndarray | None, seed: int, horizon: int) -> tuple[float, bool]:
    """One real Push episode: the controller (or, with ``ctrl=None``, uniform random actions)."""
    env = gym.make(WORLD, **{**model.config.world_kwargs, "obs": "pixels", "max_steps": horizon})
    frame, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    as_obs = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None]  # noqa: E731
    state = model.encode(as_obs(frame))
    total, success = 0.0, False
    for _ in range(horizon):
        if ctrl is None:
            action = rng.uniform(-1, 1, model.config.action_dim).astype(np.float32)
        else:
            action = ctrl.act(params[None], ctrl.features(state.numpy(), np.asarray(info["goal"])[None]))[0]
        frame, reward, terminated, truncated, info = env.step(action)
        total, success = total + reward, bool(info["is_success"])
        state = model.observe(state, torch.from_numpy(action)[None], as_obs(frame))
        if terminated or truncated:
            break
    return total, success


def get_model(args: argparse.Namespace) -> RNNWorldModel:
    if args.model:
        return load_model(args.model)
    data = (args.work / "data").resolve()
    if not data.exists():
        collect(CollectConfig(world=WORLD, episodes=args.episodes, out=data, obs="pixels", policy="mixed", seed=0))
    cfg = TrainConfig(
        data=str(data), model="rnn", out=str(args.work / "rnn"), steps=args.steps, threads=args.threads,
        rnn=RNNConfig(vae_steps=args.steps // 2), probe_frames=2048,
    )
    return load_model(train(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a trained rnn checkpoint (skips collect + train)")
    parser.add_argument("--work", type=Path, default=Path("runs/rnn-cmaes"))
    parser.add_argument("--episodes", type=int, default=200, help="Push episodes collected to train V and M")
    parser.add_argument("--steps", type=int, default=1500, help="training steps (half VAE, half MDN-RNN)")
    parser.add_argument("--generations", type=int, default=60)
    parser.add_argument("--popsize", type=int, default=16)
    parser.add_argument("--dreams", type=int, default=8, help="dream episodes per candidate per generation")
    parser.add_argument("--horizon", type=int, default=50, help="steps per episode, dream and real")
    parser.add_argument("--temperature", type=float, default=1.0, help="MDN sampling temperature in the dream")
    parser.add_argument("--test-episodes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(args.seed)

    model = get_model(args).eval()
    if not isinstance(model, RNNWorldModel):
        raise SystemExit(f"{args.model} is a {model.config.family!r} model; this example needs --model rnn")
    ctrl = LinearController(model)
    model.config.sample, model.config.temperature = True, args.temperature  # dreams are sampled
    env = DreamVectorEnv(model, num_envs=args.popsize * args.dreams, obs="latent", context=1, max_steps=args.horizon)
    es = cma.CMAEvolutionStrategy(np.zeros(ctrl.size), 0.5, {"popsize": args.popsize, "seed": args.seed + 1, "verbose": -9})
    rng, start = np.random.default_rng(args.seed), time.perf_counter()
    for gen in range(args.generations):
        candidates = np.asarray(es.ask())
        seeds = rng.integers(1_000_000, 2_000_000, args.dreams).tolist()  # real first frames, fresh per generation
        fitness = dream_returns(env, ctrl, candidates, seeds, args.horizon)
        es.tell(list(candidates), list(-fitness))  # CMA-ES minimises
        if gen % 10 == 0 or gen == args.generations - 1:
            print(f"generation {gen:3d}: dream return best {fitness.max():7.2f}, mean {fitness.mean():7.2f}", file=sys.stderr)
    best = np.asarray(es.result.xfavorite)  # the distribution's mean: less lucky than the best sample
    dream_best = float(dream_returns(env, ctrl, best[None], list(range(2_000_000, 2_000_000 + env.num_envs)), args.horizon)[0])
    evolve_s = time.perf_counter() - start
    model.config.sample = False

    seeds = range(TEST_SEED, TEST_SEED + args.test_episodes)
    results = {
        "CMA-ES controller (evolved in the dream)": [real_episode(model, ctrl, best, s, args.horizon) for s in seeds],
        "random policy": [real_episode(model, None, None, s, args.horizon) for s in seeds],
    }
    print(
        f"\nPush, {args.test_episodes} held-out real episodes of up to {args.horizon} steps; return = sum of "
        f"-(block-goal distance / arena). Controller: {ctrl.size} parameters on [z, h, goal], "
        f"{args.generations} CMA-ES generations x {args.popsize} candidates x {args.dreams} dreams "
        f"({evolve_s:.0f} s, no real transitions); its return in the dream: {dream_best:.2f}.\n"
    )
    print("| policy | real return (mean ± s.e.) | success |")
    print("| --- | ---: | ---: |")
    for name, runs in results.items():
        r, ok = np.array([x[0] for x in runs]), np.array([x[1] for x in runs])
        print(f"| {name} | {r.mean():.2f} ± {r.std(ddof=1) / np.sqrt(len(r)):.2f} | {100 * ok.mean():.0f}% |")


if __name__ == "__main__":
    main()
