"""The play server: HTTP + WebSocket protocol, message validation, other families, a real browser."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import physworld  # noqa: F401  (registers the worlds)
from physworld.data import CollectConfig, EpisodeStore, Windows, collect
from physworld.eval.latent_action import fit_action_lookup
from physworld.models import JEPA, JEPAConfig
from physworld.models.latent_action import LatentAction, LatentActionConfig
from physworld.serve.app import MAX_MESSAGE_BYTES, PlayConfig, Session, create_app, load_start
from physworld.train import TrainConfig, fit
from physworld.train.loop import data_fields

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[LatentAction, gym.Env]:
    """A tiny latent-action model, a few steps into training, with a fitted action lookup."""
    root = tmp_path_factory.mktemp("play")
    path = collect(
        CollectConfig(
            world="physworld/Platformer-v0",
            episodes=3,
            out=root / "pf",
            policy="expert",
            max_steps=10,
            num_envs=1,
            vector="sync",
        )
    )
    store = EpisodeStore.open(path)
    torch.manual_seed(0)
    model = LatentAction(
        LatentActionConfig(
            codes=4,
            code_dim=4,
            width=8,
            blocks=1,
            kernels=2,
            kernel_size=9,
            sharp=False,  # soft: frames move
            **data_fields(store.meta),
        )
    )
    cfg = TrainConfig(
        model="latent-action",
        steps=3,
        batch_size=4,
        window=3,
        warmup=1,
        lr=3e-2,
        out=str(root / "run"),
        probe_steps=0,
        progress=False,
        threads=1,
    )
    fit(model, Windows(store, 3), cfg)
    fit_action_lookup(model, Windows(store, 4), count=24)
    env = gym.make("physworld/Platformer-v0")
    return model.eval(), env


@pytest.fixture
def client(trained) -> TestClient:
    model, env = trained
    return TestClient(create_app(model, env=env, seed=0, fps=30))


def until(ws, kind: str, limit: int = 60) -> dict:
    """The next message of type ``kind`` (frames keep arriving in between)."""
    for _ in range(limit):
        msg = ws.receive_json()
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind!r} message in {limit} messages")


def png_b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def frame_of(msg: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(msg["data"]))))


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/ws" in page.text
    info = client.get("/info").json()
    assert info["model"] == "latent-action" and info["latent_actions"]
    assert [c["index"] for c in info["controls"]] == [0, 1, 2, 3]
    assert info["controls"][0]["keys"][0] == "1"
    assert set(info["mapping"]) == {"noop", "left", "right", "jump"}  # the probe's lookup, shown


def test_play_frames_actions_reset_and_gif(client):
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and len(hello["controls"]) == 4
        first = until(ws, "frame")
        assert frame_of(first).shape == (64, 64, 3) and "fps" in first
        ws.send_json({"type": "action", "action": 2})
        for _ in range(5):
            msg = until(ws, "frame")
        assert msg["action"] == 2 and msg["step"] > first["step"]
        ws.send_json({"type": "record", "on": True})
        for _ in range(3):
            until(ws, "frame")
        ws.send_json({"type": "record", "on": False})
        gif = until(ws, "gif")
        assert gif["frames"] >= 3 and base64.b64decode(gif["data"])[:6] == b"GIF89a"
        before = until(ws, "frame")["step"]
        ws.send_json({"type": "reset"})
        steps = [until(ws, "frame")["step"] for _ in range(12)]  # frames already queued come first
        assert before > 5 and min(steps) <= 3


def test_upload_a_start_image(client):
    image = np.zeros((100, 80, 3), np.uint8)
    image[:, :, 1] = 200  # all green, any size: resized to the model's 64x64
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_json({"type": "image", "data": "data:image/png;base64," + png_b64(image)})
        for _ in range(10):
            frame = frame_of(until(ws, "frame"))
            if frame[..., 1].mean() > 150:
                break
        assert frame[..., 1].mean() > 150 and frame[..., 0].mean() < 50


@pytest.mark.parametrize(
    "message, match",
    [
        ("x" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"type": "teleport"}), "unknown message type"),
        (json.dumps({"type": "action", "action": 4}), "integer in"),
        (json.dumps({"type": "action", "action": -1}), "integer in"),
        (json.dumps({"type": "action", "action": "1"}), "integer in"),
        (json.dumps({"type": "action", "action": True}), "integer in"),
        (json.dumps({"type": "image", "data": "@@not base64@@"}), "base64"),
        (
            json.dumps({"type": "image", "data": base64.b64encode(b"not an image").decode()}),
            "not a readable",
        ),
        (json.dumps({"type": "image", "data": 5}), "base64 string"),
        (json.dumps({"type": "record", "on": "yes"}), "true or false"),
    ],
)
def test_bad_messages_get_an_error_and_the_game_goes_on(client, message, match):
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text(message)
        assert match in until(ws, "error")["message"]
        ws.send_json({"type": "action", "action": 1})  # still playing
        assert until(ws, "frame")["type"] == "frame"


def test_binary_messages_and_huge_images_are_refused(client):
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_bytes(b"\x00\x01")
        assert "JSON text" in until(ws, "error")["message"]
        big = np.zeros((2100, 10, 3), np.uint8)
        ws.send_json({"type": "image", "data": png_b64(big)})
        assert "larger than" in until(ws, "error")["message"]


def test_rate_limit(client):
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        for _ in range(200):
            ws.send_json({"type": "action", "action": 0})
        assert "too many" in until(ws, "error", limit=400)["message"]


def test_survives_clients_that_vanish_mid_stream(client):
    for _ in range(3):
        with client.websocket_connect("/ws") as ws:
            ws.receive_json()
            until(ws, "frame")
            ws.send_json({"type": "action", "action": 3})
        # the context exits while the server is mid-frame: it must shrug, not crash
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "hello" and until(ws, "frame")


def test_other_families_play_with_world_actions_and_render_state():
    env = gym.make("physworld/Push-v0", obs="state")
    cfg = JEPAConfig(
        obs_kind="state",
        obs_shape=(12,),
        action_dim=2,
        state_dim=12,
        latent_dim=16,
        predictor="mlp",
        world="physworld/Push-v0",
        action_low=[-1, -1],
        action_high=[1, 1],
    )
    model = JEPA(cfg).eval()
    model.probe.fitted.fill_(True)  # an (untrained) probe stands in for a fitted one
    session = Session(model, env=env)
    labels = [c.label for c in session.controls]
    assert labels == ["none", "left", "right", "down", "up"] and session.idle == 0
    assert session.controls[1].keys[0] == "ArrowLeft"
    frame = session.step(2)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    app = create_app(model, env=env, fps=30)
    with TestClient(app).websocket_connect("/ws") as ws:
        assert not ws.receive_json()["latent_actions"]
        assert frame_of(until(ws, "frame")).shape == (64, 64, 3)
        ws.send_json({"type": "image", "data": png_b64(np.zeros((8, 8, 3), np.uint8))})
        assert "state vectors" in until(ws, "error")["message"]
    model.probe = None
    with pytest.raises(ValueError, match="neither a decoder nor a state probe"):
        Session(model, env=env)


def test_load_start_from_an_image_file(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "start.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(path)
    start, env = load_start(PlayConfig(model=tmp_path, image=path), model)
    assert start.shape == (64, 64, 3) and (start == 90).all()
    assert env.unwrapped.spec.id == "physworld/Platformer-v0"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="start.png"):
        load_start(PlayConfig(model=tmp_path, image=path), model)


def test_session_step_and_encode_is_fast_enough(trained):
    """The server's per-frame work (model step + PNG) for the tiny model: far under 100 ms."""
    model, env = trained
    session = Session(model, env=env)
    session.tick(0)
    start = time.perf_counter()
    for i in range(20):
        session.tick(i % 4)
    assert (time.perf_counter() - start) / 20 < 0.1


# --- the real browser -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(trained):
    import uvicorn

    model, env = trained
    port = free_port()
    config = uvicorn.Config(
        create_app(model, env=env, seed=0, fps=20), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the play server did not start"
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (make browser)",
)
def test_browser_plays(server):
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server)
            page.wait_for_function(
                "document.querySelectorAll('#controls tr[data-index]').length === 4"
            )
            page.wait_for_function("Number(document.getElementById('step').textContent) > 5")
            assert "probe-learned mapping" in page.inner_text("#mapping").lower()
            canvas = lambda: page.evaluate("document.getElementById('screen').toDataURL()")  # noqa: E731
            # hold latent action 3 (key "3") and watch the server apply it
            page.keyboard.down("3")
            page.wait_for_function(
                "document.querySelector('#controls tr.held')?.dataset.index === '2'"
            )
            page.wait_for_function("document.getElementById('action').textContent === '2'")
            held = canvas()
            page.keyboard.up("3")
            page.wait_for_function("document.getElementById('action').textContent !== '2'")
            page.keyboard.down("2")
            page.wait_for_function("document.getElementById('action').textContent === '1'")
            page.wait_for_timeout(300)
            assert canvas() != held  # frames move on, driven by the new key
            page.keyboard.up("2")
            page.wait_for_function("Number(document.getElementById('fps').textContent) >= 5")
            page.click("#reset")
            page.wait_for_function("Number(document.getElementById('step').textContent) < 5")
            assert not errors, errors
        finally:
            browser.close()
