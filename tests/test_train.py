"""The training loop: learning, determinism, checkpoints, resume after SIGKILL, bad input."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from test_models import MovingDots, small_jepa

from physworld.models import JEPA, load_model
from physworld.models.base import recover_folder
from physworld.train import TrainConfig, TrainingDiverged, build_model, fit, parse_config, train
from physworld.train.loop import lr_factor

torch.set_num_threads(1)
TESTS = Path(__file__).parent


def config(out: Path, **kw) -> TrainConfig:
    values = dict(
        steps=40,
        batch_size=16,
        window=4,
        lr=2e-3,
        warmup=5,
        threads=1,
        out=str(out),
        checkpoint_every=10,
        log_every=10,
        progress=False,
        probe_steps=0,
    )
    return TrainConfig(**{**values, **kw})


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def test_fit_learns_without_collapse_and_is_deterministic(tmp_path: Path):
    data, val = MovingDots(episodes=100), MovingDots(episodes=20, seed=1)
    runs = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        cfg = config(tmp_path / name, steps=60, probe_steps=300, probe_frames=2000)
        runs.append(fit(small_jepa(data), data, cfg, eval_windows=val))
    log = metrics(tmp_path / "a")
    losses = [m["loss"] for m in log if "loss" in m]
    assert losses[-1] < losses[0]
    assert log[-2]["eff_rank"] > 4 and log[-2]["std_min"] > 0.1  # not collapsed
    assert {"samples_per_s", "lr", "grad_norm", "critic", "pred", "rollout"} <= set(log[-2])
    assert log[-1]["probe_pos_err"] < 0.05  # state mode: positions read back to < 5% of the arena

    a, b = weights(runs[0]), weights(runs[1])
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights, bit for bit
    model = load_model(runs[0])
    batch = next(val.batches(4))
    assert model.read_state(model.encode(batch["obs"][:, 0])).shape == (4, 6)
    state = json.loads((tmp_path / "a" / "train_state" / "state.json").read_text())
    assert state["step"] == 60 and state["probe"]["probe_pos_err"] == log[-1]["probe_pos_err"]


def test_bf16_and_other_critics_train(tmp_path: Path):
    data = MovingDots(episodes=20, pixels=True)
    for i, critic in enumerate(("vicreg", "ema")):
        out = tmp_path / critic
        fit(small_jepa(data, critic=critic), data, config(out, steps=4, bf16=i == 0, log_every=2))
        assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics(out))


RUN = """
import sys, time
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_models import MovingDots, small_jepa
from test_train import config
from physworld.train import fit

class Slow(MovingDots):  # slow enough to be killed mid-run
    def batches(self, *args, **kwargs):
        for batch in super().batches(*args, **kwargs):
            time.sleep({delay})
            yield batch

data = Slow(episodes=20)
torch.manual_seed(0)
fit(small_jepa(data), data, config({out!r}, steps=40, checkpoint_every=5, probe_steps=50))
"""


def run_training(out: Path, delay: float) -> subprocess.Popen:
    script = textwrap.dedent(RUN.format(tests=str(TESTS), out=str(out), delay=delay))
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)


def test_sigkill_then_rerun_resumes_and_ends_where_an_uninterrupted_run_ends(tmp_path: Path):
    out = tmp_path / "run"
    proc = run_training(out, delay=0.05)
    state = out / "train_state" / "state.json"
    deadline = time.time() + 90
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    recover_folder(out / "train_state")  # in case the kill fell between a save's two renames
    killed_at = json.loads(state.read_text())["step"]
    assert 5 <= killed_at < 40

    again = run_training(out, delay=0.0)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert f"from step {killed_at}" in err
    final = json.loads(state.read_text())
    assert final["step"] == 40 and final["probe"] is not None
    logged = [m["step"] for m in metrics(out) if "loss" in m]
    assert logged == [10, 20, 30, 40]  # the killed run's lines after its checkpoint were dropped

    # the resumed run is the uninterrupted run, bit for bit (data position, RNG, optimizer)
    data = MovingDots(episodes=20)
    torch.manual_seed(0)
    reference = fit(
        small_jepa(data),
        data,
        config(tmp_path / "ref", steps=40, checkpoint_every=5, probe_steps=50),
    )
    a, b = weights(out / "model"), weights(reference)
    assert all(torch.equal(a[k], b[k]) for k in a)


class Exploding(JEPA):
    """A JEPA whose loss turns NaN at step 7."""

    def loss(self, batch, step=0):
        out = super().loss(batch, step)
        out["loss"] = out["loss"] * (float("nan") if step >= 7 else 1.0)
        return out


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    data = MovingDots(episodes=10)
    model = Exploding(small_jepa(data).config)
    with pytest.raises(
        TrainingDiverged, match="loss became nan at step 7.*last good checkpoint: step 5"
    ):
        fit(model, data, config(tmp_path, checkpoint_every=5))
    assert json.loads((tmp_path / "train_state" / "state.json").read_text())["step"] == 5
    assert isinstance(load_model(tmp_path / "model"), JEPA)


def test_bad_data_and_damaged_runs_get_clear_errors(tmp_path: Path):
    data = MovingDots(episodes=4)
    with pytest.raises(ValueError, match="actions have dimension 3 but the model expects 2"):
        fit(small_jepa(data), MovingDots(episodes=4, action_dim=3), config(tmp_path / "a"))

    class Empty(MovingDots):
        def batches(self, *args, **kwargs):
            return iter(())

    with pytest.raises(ValueError, match="yielded no batches"):
        fit(small_jepa(data), Empty(episodes=4), config(tmp_path / "b"))

    # two runs writing into one folder
    (tmp_path / "busy").mkdir()
    with open(tmp_path / "busy" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="another training run is writing to"):
            fit(small_jepa(data), data, config(tmp_path / "busy"))

    # a checkpoint fine-tuned on data of another action dimension
    ckpt = small_jepa(data).save(tmp_path / "ckpt")
    meta = {
        "obs": "state",
        "obs_shape": [6],
        "action_dim": 3,
        "state_dim": 6,
        "world": "physworld/Other-v0",
    }
    with pytest.raises(
        ValueError, match="action_dim is 3 but the model at .*ckpt was trained with 2"
    ):
        build_model(config(tmp_path / "c", init=str(ckpt)), meta)

    # a run folder whose train state is damaged, or belongs to another model
    fit(small_jepa(data), data, config(tmp_path / "d", steps=10, checkpoint_every=5))
    with pytest.raises(ValueError, match="different model .*latent_dim"):
        fit(small_jepa(data, latent_dim=16), data, config(tmp_path / "d", steps=20))
    # a run saved before a config field existed (the field at its default) still resumes
    state = tmp_path / "d" / "train_state" / "state.json"
    info = json.loads(state.read_text())
    del info["model_config"]["recon_weight"]
    del info["model_config"]["probe_spatial"]  # read back as False, moot for a latent without a map
    state.write_text(json.dumps(info))
    fit(small_jepa(data), data, config(tmp_path / "d", steps=12))
    assert json.loads(state.read_text())["step"] == 12
    trainer = tmp_path / "d" / "train_state" / "trainer.pt"
    trainer.write_bytes(trainer.read_bytes()[:100])
    with pytest.raises(ValueError, match="train state .* is damaged"):
        fit(small_jepa(data), data, config(tmp_path / "d", steps=20))


def test_config_file_and_flags(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 7\nlr: 0.01\njepa:\n  critic: vicreg\n  latent_dim: 64\n")
    cfg = parse_config(["--config", str(path), "--lr", "0.5", "--data", "somewhere"])
    assert (cfg.steps, cfg.lr, cfg.data, cfg.jepa.critic, cfg.jepa.latent_dim) == (
        7,
        0.5,
        "somewhere",
        "vicreg",
        64,
    )
    path.write_text("stepz: 7\n")
    with pytest.raises(ValueError, match="unknown TrainConfig option.*stepz"):
        parse_config(["--config", str(path)])


def test_learning_rate_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


@pytest.mark.slow
def test_train_end_to_end_on_a_collected_dataset(tmp_path: Path):
    import physworld  # noqa: F401  (registers the worlds)

    if "physworld/Balls-v0" not in gym.registry:
        pytest.skip("the worlds are not available yet")
    from physworld.data import CollectConfig, collect

    data = collect(
        CollectConfig(
            world="physworld/Balls-v0",
            episodes=6,
            out=tmp_path / "data",
            max_steps=20,
            obs="state",
            num_envs=1,
            vector="sync",
        )
    )
    cfg = config(
        tmp_path / "run", data=str(data), steps=20, probe_steps=100, probe_frames=500, batch_size=8
    )
    model = load_model(train(cfg))
    assert model.config.world == "physworld/Balls-v0" and bool(model.probe.fitted)
    assert model.config.arena_size > 0
