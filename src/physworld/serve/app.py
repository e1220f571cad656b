"""``physworld play``: a learned world, live in the browser, driven by the keyboard.

The page (``static/index.html``) opens a WebSocket to ``/ws``. The server owns the clock: every
``1 / fps`` seconds it steps the model with the control currently held and sends the new frame
(PNG, base64, in JSON), with the frame rate it achieves. The client only says which control is
held, resets, uploads a start image, and starts / stops a GIF recording.

Protocol (client -> server, JSON text, at most ``MAX_MESSAGE_BYTES`` and ``MAX_RATE`` per second):
``{"type": "action", "action": i}`` (an index into the ``controls`` of the hello message),
``{"type": "reset"}``, ``{"type": "image", "data": "<base64 PNG/JPEG>"}``,
``{"type": "record", "on": true|false}``. Server -> client: ``hello`` (controls, fps, model),
``frame`` (data, step, fps, action), ``gif`` (data, frames), ``error`` (message). A message
that fails validation gets an ``error`` reply and changes nothing; the session goes on.

Controls: for a latent-action model, one per latent action (keys 1..N), and the arrow keys on the
latent actions that the fitted lookup names left / right / jump (the mapping is shown on the
page); for any other family, the world's moves (arrows) through ``model.predict``. Models with
a decoder are drawn by it; the others by the world's ``render_state`` of their probe's state.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import torch
import tyro
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image, UnidentifiedImageError

from physworld.eval import html
from physworld.models import WorldModel, load_model
from physworld.runtime import set_threads

STATIC = Path(__file__).parent / "static"
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: a 64x64 PNG is a few kB; anything near this is abuse
MAX_IMAGE_SIDE = 2048  # uploaded images are resized to the model's size; bigger ones are refused
MAX_RATE = 60.0  # client messages per second (burst: 2 s worth)
MAX_RECORD_FRAMES = 300  # a GIF of at most 20 s at 15 fps (a few MB)
KEYS = {  # move name -> keyboard keys (KeyboardEvent.key values)
    "left": ["ArrowLeft", "a"],
    "right": ["ArrowRight", "d"],
    "jump": ["ArrowUp", "w", " "],
    "up": ["ArrowUp", "w"],
    "down": ["ArrowDown", "s"],
}
IDLE_NAMES = ("noop", "none")
GONE = (WebSocketDisconnect, RuntimeError, OSError)  # what sending to a vanished client raises


@dataclass
class PlayConfig:
    """Play a trained world model in the browser (``physworld play runs/x``)."""

    model: tyro.conf.Positional[Path] = Path("runs/latent-action")
    """Checkpoint folder, or a training run folder holding one in model/."""
    image: Path | None = None
    """Start frame as an image file (PNG/JPEG; resized to the model's size). Pixel models only."""
    world: str | None = None
    """World whose reset gives the start frame and the moves (None: the model's own world)."""
    seed: int = 0
    """Seed of that world's reset (layout and colours)."""
    port: int = 8000
    """TCP port to serve on."""
    host: str = "127.0.0.1"
    """Interface to bind; the default serves this machine only. Use 0.0.0.0 knowingly."""
    threads: int = 2
    """CPU threads for PyTorch."""
    fps: float = 15.0
    """Frames per second the server aims for."""


@dataclass
class Control:
    """One thing the player can hold: a latent action (``code``) or a world action (``vector``).

    ``move`` names the true move it stands for (from the world, or the fitted lookup), if any.
    """

    label: str
    keys: list[str] = field(default_factory=list)
    code: int | None = None
    vector: np.ndarray | None = None
    move: str | None = None

    def public(self, index: int) -> dict[str, Any]:
        return {"index": index, "label": self.label, "keys": self.keys}


class BadMessage(ValueError):
    """A client message that fails validation; its text is sent back as an ``error``."""


# --- the game state, independent of the transport ---------------------------------------------


class Session:
    """One player's world: the model, its latent state, the controls and the recording."""

    def __init__(
        self,
        model: WorldModel,
        start: np.ndarray | None = None,
        env: Any = None,
        seed: int | None = None,
    ):
        self.model = model.eval()
        self.env, self.seed = env, seed
        self.latent_actions = hasattr(model, "predict_latent")
        self.pixels = model.config.obs_kind == "pixels"
        self.decoder = has_decoder(model)
        if not self.decoder and getattr(model, "probe", None) is None:
            raise ValueError(
                f"the {model.config.family!r} model has neither a decoder nor a state probe: "
                "nothing to draw (train it with --probe-steps > 0)"
            )
        if (not self.decoder or not self.pixels) and env is None:
            raise ValueError("this model's states are drawn by its world: pass a world")
        self.controls = self._latent_controls() if self.latent_actions else world_controls(env)
        self.idle = next((i for i, c in enumerate(self.controls) if c.move in IDLE_NAMES), 0)
        world_start = self._world_start() if env is not None else None  # also sets the world's look
        if start is None and world_start is None:
            raise ValueError("give a start image or a world to take the start frame from")
        self.start = start if start is not None else world_start
        self.steps, self.recording = 0, None
        self.reset()

    # controls
    def _latent_controls(self) -> list[Control]:
        """One control per latent action: digit keys, plus the move keys of the latent action
        the fitted lookup maps each move to (e.g. the arrow keys of left / right / jump)."""
        m, names = self.model, list(self.model.config.action_names)
        controls = []
        for code in range(m.config.codes):
            meaning = int(m.code_to_action[code]) if names else -1
            label = f"latent {code}" + (f" → {names[meaning]}" if meaning >= 0 else "")
            move = (
                names[meaning] if meaning >= 0 and int(m.action_to_code[meaning]) == code else None
            )
            keys = ([str(code + 1)] if code < 9 else []) + KEYS.get(move or "", [])
            controls.append(Control(label, keys, code=code, move=move))
        return controls

    @property
    def mapping(self) -> dict[str, Any]:
        """What the probe learned, for the page: true move -> latent action."""
        m = self.model
        if not self.latent_actions or not m.config.action_names:
            return {}
        return {name: int(m.action_to_code[i]) for i, name in enumerate(m.config.action_names)}

    # state
    def _world_start(self) -> np.ndarray:
        obs, info = self.env.reset(seed=self.seed)
        return obs if self.pixels else info["state"]

    def _encode(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(obs))  # a copy: frames from PIL are read-only
        if self.pixels:
            x = x.permute(2, 0, 1)
        with torch.no_grad():
            return self.model.encode(x[None].to(_device(self.model)))

    def reset(self) -> None:
        self.z = self._encode(self.start)
        self.steps = 0
        self.frame = self.render()

    def set_image(self, frame: np.ndarray) -> None:
        if not self.pixels:
            raise BadMessage("this model reads state vectors, not images")
        self.start = frame
        self.reset()

    @torch.no_grad()
    def step(self, index: int) -> np.ndarray:
        """Advance one step with control ``index``; returns the new frame (uint8 ``[H, W, 3]``)."""
        control = self.controls[index]
        if control.code is not None:
            self.z = self.model.predict_latent(
                self.z, torch.tensor([[control.code]], device=self.z.device)
            )[:, 0]
        else:
            action = torch.as_tensor(control.vector, dtype=torch.float32, device=self.z.device)
            self.z = self.model.predict(self.z, action[None, None])[:, 0]
        self.steps += 1
        self.frame = self.render()
        if self.recording is not None and len(self.recording) < MAX_RECORD_FRAMES:
            self.recording.append(self.frame)
        return self.frame

    def render(self) -> np.ndarray:
        """The frame to show: decoded pixels, or the world drawing the decoded / probed state."""
        if self.decoder:
            x = self.model.decode(self.z)[0]
            if not self.pixels:  # a state decoder: the world draws it
                return self.env.unwrapped.render_state(x.float().cpu().numpy())
            if x.dtype != torch.uint8:  # decoders on the models' [-1, 1] scale
                x = ((x.float() + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)
            return x.permute(1, 2, 0).cpu().numpy()
        state = self.model.read_state(self.z)[0].cpu().numpy()
        return self.env.unwrapped.render_state(state)

    def tick(self, index: int) -> dict[str, Any]:
        """Step and encode: what the server's loop does each frame."""
        frame = self.step(index)
        return {"type": "frame", "data": encode_png(frame), "step": self.steps, "action": index}

    # recording
    def record(self, on: bool) -> dict[str, Any] | None:
        if on:
            self.recording = [self.frame]
            return None
        frames, self.recording = self.recording or [self.frame], None
        return {
            "type": "gif",
            "data": base64.b64encode(html.gif(frames, fps=15, scale=3)).decode(),
            "frames": len(frames),
        }


def has_decoder(model: WorldModel) -> bool:
    """Whether ``model.decode`` works (``has_decoder`` as a method or property, else overridden)."""
    has = getattr(model, "has_decoder", None)
    if has is None:
        return type(model).decode is not WorldModel.decode
    return bool(has() if callable(has) else has)


def _device(model: WorldModel) -> torch.device:
    return next(model.parameters()).device


def world_controls(env: Any) -> list[Control]:
    """The world's moves as controls: named moves for choice worlds, arrows along the axes otherwise."""
    world = env.unwrapped
    names = getattr(world, "ACTION_NAMES", None)
    if names:
        return [
            Control(name, KEYS.get(name, []), vector=world.one_hot(i), move=name)
            for i, name in enumerate(names)
        ]
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    mid = (low + high) / 2
    controls = [Control("none", [], vector=mid, move="none")]
    if np.all(high == low):
        return controls
    axes = [("left", 0, low), ("right", 0, high), ("down", 1, low), ("up", 1, high)]
    for name, dim, bound in axes[: 2 * min(2, len(low))]:
        vector = mid.copy()
        vector[dim] = bound[dim]
        controls.append(Control(name, KEYS[name], vector=vector, move=name))
    return controls


# --- message validation -----------------------------------------------------------------------


def encode_png(frame: np.ndarray) -> str:
    return base64.b64encode(html.png(frame)).decode()


def decode_image(data: Any, size: tuple[int, int]) -> np.ndarray:
    """Base64 image (optionally a ``data:`` URL) -> uint8 ``[H, W, 3]`` at the model's size."""
    if not isinstance(data, str) or not data:
        raise BadMessage("image: 'data' must be a base64 string")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("image: 'data' is not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if max(im.size) > MAX_IMAGE_SIDE:
                raise BadMessage(
                    f"image: {im.size[0]}x{im.size[1]} is larger than {MAX_IMAGE_SIDE} pixels a side"
                )
            rgb = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise BadMessage("image: not a readable PNG/JPEG image") from None
    return np.asarray(rgb, dtype=np.uint8)


def parse_message(text: Any, n_controls: int) -> dict[str, Any]:
    """Validate one client message: size, JSON, type, fields. Raises :class:`BadMessage`."""
    if not isinstance(text, str):
        raise BadMessage("messages must be JSON text")
    if len(text) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message of {len(text)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise BadMessage("message is not valid JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise BadMessage("message must be a JSON object with a string 'type'")
    kind = msg["type"]
    if kind == "action":
        index = msg.get("action")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_controls:
            raise BadMessage(
                f"action: 'action' must be an integer in [0, {n_controls}), got {index!r}"
            )
    elif kind == "record":
        if not isinstance(msg.get("on"), bool):
            raise BadMessage("record: 'on' must be true or false")
    elif kind not in ("reset", "image"):
        raise BadMessage(
            f"unknown message type {kind[:40]!r} (expected action, reset, image or record)"
        )
    return msg


class RateLimit:
    """Token bucket: ``rate`` messages per second, bursts of ``2 * rate``."""

    def __init__(self, rate: float = MAX_RATE):
        self.rate, self.tokens, self.last = rate, 2 * rate, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# --- the app ----------------------------------------------------------------------------------


def create_app(
    model: WorldModel,
    start_frame: np.ndarray | None = None,
    *,
    env: Any = None,
    seed: int | None = None,
    fps: float = 15.0,
) -> FastAPI:
    """The FastAPI app: ``/`` (the page), ``/info`` (controls, JSON), ``/ws`` (the game).

    ``start_frame``: uint8 ``[H, W, 3]`` (pixel models) or a state vector; if None, ``env``'s
    reset with ``seed`` gives it. ``env`` (a world) also supplies the moves and the renderer
    for models without a decoder. Every connection plays its own session.
    """
    if not 0 < fps <= 60:
        raise ValueError(f"fps must be in (0, 60], got {fps}")
    probe = Session(model, start_frame, env, seed)  # fail now, not in the first connection
    start = probe.start
    app = FastAPI(title="physworld play")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/info")
    def info() -> JSONResponse:
        return JSONResponse(hello(probe))

    def hello(session: Session) -> dict[str, Any]:
        return {
            "type": "hello",
            "model": model.config.family,
            "world": model.config.world,
            "controls": [c.public(i) for i, c in enumerate(session.controls)],
            "idle": session.idle,
            "mapping": session.mapping,
            "fps": fps,
            "latent_actions": session.latent_actions,
        }

    @app.websocket("/ws")
    async def play_socket(ws: WebSocket) -> None:
        await ws.accept()
        session = Session(model, start, env)
        held, commands = session.idle, []  # commands: validated, applied between two frames
        limit = RateLimit()

        async def send(message: dict[str, Any]) -> None:
            await ws.send_text(json.dumps(message))

        async def receive_loop() -> None:
            nonlocal held
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    if not limit.allow():
                        raise BadMessage("too many messages: slow down")
                    msg = parse_message(message.get("text"), len(session.controls))
                    if msg["type"] == "action":
                        held = msg["action"]
                    elif msg["type"] == "image":
                        if not session.pixels:
                            raise BadMessage("this model reads state vectors, not images")
                        commands.append(
                            ("image", decode_image(msg.get("data"), session.start.shape[:2]))
                        )
                    else:
                        commands.append((msg["type"], msg.get("on")))
                except BadMessage as err:
                    await send({"type": "error", "message": str(err)})
                except Exception as err:  # a bug must not end the game: report it, play on
                    await send(
                        {
                            "type": "error",
                            "message": f"could not handle that message ({type(err).__name__})",
                        }
                    )

        def tick() -> list[dict[str, Any]]:
            """Apply queued commands, then step: runs in a worker thread, off the event loop."""
            out = []
            while commands:
                kind, value = commands.pop(0)
                try:
                    if kind == "reset":
                        session.reset()
                    elif kind == "image":
                        session.set_image(value)
                    elif (gif := session.record(value)) is not None:
                        out.append(gif)
                except BadMessage as err:
                    out.append({"type": "error", "message": str(err)})
            return out + [session.tick(held)]

        async def frame_loop() -> None:
            period, next_at, ticks = 1.0 / fps, time.perf_counter(), []
            while True:
                messages = await anyio.to_thread.run_sync(tick)
                now = time.perf_counter()
                ticks = [t for t in ticks if now - t < 2.0] + [now]
                messages[-1]["fps"] = round((len(ticks) - 1) / max(now - ticks[0], 1e-6), 1)
                for message in messages:
                    await send(message)
                next_at = max(next_at + period, now)
                await anyio.sleep(max(0.0, next_at - time.perf_counter()))

        async def until_done(loop) -> None:
            """Run one loop; when it ends (the client left, or a send failed), stop the other."""
            with contextlib.suppress(*GONE):  # the client went away mid-frame
                await loop()
            group.cancel_scope.cancel()

        try:
            await send(hello(session))
        except GONE:
            return
        async with anyio.create_task_group() as group:
            group.start_soon(until_done, receive_loop)
            group.start_soon(until_done, frame_loop)

    return app


def load_start(cfg: PlayConfig, model: WorldModel) -> tuple[np.ndarray | None, Any]:
    """The start frame (from ``cfg.image``) and the world (from ``cfg.world`` or the model's)."""
    import gymnasium as gym

    import physworld  # noqa: F401  (registers the worlds)

    world = cfg.world or model.config.world
    env = None
    if world:
        kwargs = dict(model.config.world_kwargs) if world == model.config.world else {}
        kwargs["obs"] = model.config.obs_kind
        if model.config.obs_kind == "pixels":
            kwargs["image_size"] = int(model.config.obs_shape[-1])
        env = gym.make(world, **kwargs)
    start = None
    if cfg.image is not None:
        c, h, w = model.config.obs_shape
        data = base64.b64encode(Path(cfg.image).read_bytes()).decode()
        try:
            start = decode_image(data, (h, w))
        except BadMessage as err:
            raise ValueError(f"{cfg.image}: {err}") from None
    return start, env


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or a run folder with one in ``model/``."""
    return path / "model" if (path / "model" / "config.json").is_file() else path


def play(cfg: PlayConfig) -> None:
    """Serve the play page on ``cfg.host:cfg.port`` until interrupted."""
    import uvicorn

    set_threads(cfg.threads)
    model = load_model(resolve_checkpoint(cfg.model))
    start, env = load_start(cfg, model)
    app = create_app(model, start, env=env, seed=cfg.seed, fps=cfg.fps)
    print(f"physworld play: open http://{cfg.host}:{cfg.port}/ (Ctrl-C to stop)")
    uvicorn.run(
        app, host=cfg.host, port=cfg.port, ws_max_size=2 * MAX_MESSAGE_BYTES, log_level="warning"
    )
