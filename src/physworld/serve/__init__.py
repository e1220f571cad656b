"""The play server: a learned world in the browser (FastAPI + WebSocket + a canvas)."""

from physworld.serve.app import PlayConfig, Session, create_app, play

__all__ = ["PlayConfig", "Session", "create_app", "play"]
