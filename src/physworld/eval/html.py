"""Self-contained HTML reports: every picture and animation is embedded as base64."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img.px{image-rendering:pixelated}figure{display:inline-block;margin:6px;text-align:center}
.note{color:#666;font-size:90%}code{background:#f5f5f5;padding:1px 4px}
"""


def _b64(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png(image: np.ndarray, scale: int = 1) -> bytes:
    """An ``[H, W, 3]`` uint8 image as PNG bytes, optionally enlarged without smoothing."""
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def gif(frames: Sequence[np.ndarray], fps: int = 10, scale: int = 2) -> bytes:
    """Frames ``[H, W, 3]`` as a looping GIF."""
    pils = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    if scale > 1:
        pils = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in pils]
    buffer = io.BytesIO()
    pils[0].save(buffer, format="GIF", save_all=True, append_images=pils[1:], duration=1000 // fps, loop=0)
    return buffer.getvalue()


def image_tag(data: bytes, caption: str = "", mime: str = "image/png") -> str:
    img = f'<img class="px" src="{_b64(data, mime)}" alt="{html.escape(caption)}">'
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>" if caption else img


def figure_tag(fig, caption: str = "") -> str:
    """A matplotlib figure, embedded as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return image_tag(buffer.getvalue(), caption)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def paragraph(text: str, note: bool = False) -> str:
    return f'<p{" class=note" if note else ""}>{html.escape(text)}</p>'


def write_page(path: str | Path, title: str, sections: Sequence[str]) -> Path:
    """Write the page atomically (a reader never sees half a report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
