"""Train a Stable-Baselines3 policy entirely inside a world model's dream, then run it for real.

    pip install "physworld[sb3]"
    python examples/dream_sb3.py runs/push-jepa [--algo ppo] [--steps 100000] [--envs 16] [--episodes 30]

The policy never touches the physics engine while learning: every transition comes from
``DreamVectorEnv`` (one batched predictor call for all environments per step). Afterwards it is
evaluated twice on the same start seeds: in the dream, and in the real world seen through
``RealWorldObservation`` (the model encodes the real frames, so the policy's inputs look the
same). A random policy's returns and success rates are reported beside it in both.
"""

from __future__ import annotations

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model", help="checkpoint folder, or a training run folder holding model/")
parser.add_argument("--algo", choices=["ppo", "sac"], default="ppo")
parser.add_argument("--steps", type=int, default=100_000, help="dream transitions to learn from")
parser.add_argument("--envs", type=int, default=16, help="dreams stepped together")
parser.add_argument("--obs", choices=["state", "latent"], default="state", help="policy input: probe state or latent")
parser.add_argument("--reward", choices=["shaped", "goal"], default="shaped",
                    help="reward to learn from: the planners' cost (shaped) or the world's (goal); returns are always reported in the world's")
parser.add_argument("--episodes", type=int, default=30, help="evaluation episodes, in the dream and in the real world")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gymnasium.vector import AutoresetMode  # noqa: E402
from stable_baselines3 import PPO, SAC  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv  # noqa: E402

from physworld.plan import DreamEnv, DreamVectorEnv, RealWorldObservation  # noqa: E402

EVAL_SEED = 30_000_000  # start scenes far from the training data's seeds


class SB3Dreams(VecEnv):
    """A Gymnasium vector env (same-step autoreset) behind SB3's VecEnv interface."""

    def __init__(self, envs: DreamVectorEnv):
        self.envs = envs  # before super().__init__, which reads render_mode through get_attr
        super().__init__(envs.num_envs, envs.single_observation_space, envs.single_action_space)

    def reset(self):
        seed = self._seeds[0]
        obs, _ = self.envs.reset(seed=seed)
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.envs.step(self.actions)
        infos = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(terminated | truncated):
            infos[i] = {"terminal_observation": info["final_obs"][i], "TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
        return obs, reward, terminated | truncated, infos

    def close(self) -> None:
        self.envs.close()

    def get_attr(self, attr_name, indices=None):
        return [getattr(self.envs, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self.envs, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return [getattr(self.envs, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._get_indices(indices)]


def evaluate(env: gym.Env, act, episodes: int) -> tuple[float, float]:
    """Mean return and success rate over seeded episodes; ``act(obs) -> action``."""
    returns, wins = [], []
    for i in range(episodes):
        obs, info = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        wins.append(bool(info.get("is_success", False)))
    return float(np.mean(returns)), float(np.mean(wins))


def main() -> None:
    torch.set_num_threads(args.threads)
    dreams = DreamVectorEnv(args.model, num_envs=args.envs, obs=args.obs, reward=args.reward, autoreset_mode=AutoresetMode.SAME_STEP)
    venv = SB3Dreams(dreams)
    venv.seed(args.seed)
    if args.algo == "ppo":
        agent = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, gamma=0.98, seed=args.seed, verbose=0)
    else:
        agent = SAC("MlpPolicy", venv, learning_starts=1000, seed=args.seed, verbose=0)
    print(f"training {args.algo.upper()} for {args.steps} dream steps in {args.envs} dreams ...")
    agent.learn(args.steps, progress_bar=False)

    dream = DreamEnv(dreams.model, obs=args.obs)
    real = RealWorldObservation(gym.make(dreams.model.config.world, **{**dreams.model.config.world_kwargs, "obs": dreams.model.config.obs_kind}), dream)
    rng = np.random.default_rng(args.seed)
    policies = {
        args.algo.upper(): lambda obs: agent.predict(obs, deterministic=True)[0],
        "random": lambda obs: rng.uniform(dream.action_space.low, dream.action_space.high).astype(np.float32),
    }
    print(f"\n{'policy':<8} {'dream return':>13} {'dream success':>14} {'real return':>12} {'real success':>13}")
    for name, act in policies.items():
        d_ret, d_win = evaluate(dream, act, args.episodes)
        r_ret, r_win = evaluate(real, act, args.episodes)
        print(f"{name:<8} {d_ret:13.2f} {100 * d_win:13.0f}% {r_ret:12.2f} {100 * r_win:12.0f}%")
    print(f"\n{args.episodes} episodes each, start seeds {EVAL_SEED}.., return = sum of -distance/arena per step")


if __name__ == "__main__":
    main()
