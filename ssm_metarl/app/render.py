"""Watch a policy act: one seeded episode recorded as frames, and several episodes side by side as a GIF.

Frames come from the env's own ``render_mode="rgb_array"`` (CartPole, Pendulum: Gymnasium's pygame
renderers, drawn off-screen). ``navigation-2d`` has no renderer of its own, so its frames are drawn here
from the recorded positions: the goal, the training range of goals and the path so far.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from PIL import Image, ImageDraw, ImageFont

from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.evaluate import seeded_episodes

PANEL = (240, 180)  # (width, height) of one policy's panel in the GIF
TITLE_H = 30
MAX_FRAMES = 125  # per GIF; longer episodes are subsampled


@dataclass
class Episode:
    """One recorded episode: RGB frames (H, W, 3) uint8, positions (navigation) and its return."""

    frames: list[np.ndarray] = field(default_factory=list)
    ret: float = 0.0
    length: int = 0
    note: str = ""
    """Why there are no frames, when there are none."""


def _nav_frame(goal: np.ndarray, path: np.ndarray, size: int = 180, extent: float = 1.3) -> np.ndarray:
    """Draw navigation-2d: grey training-goal square [-0.5, 0.5]^2, green goal, blue path, red agent."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)

    def px(p: np.ndarray) -> tuple[float, float]:
        return ((p[0] + extent) / (2 * extent) * size, (extent - p[1]) / (2 * extent) * size)

    lo, hi = px(np.array([-0.5, 0.5])), px(np.array([0.5, -0.5]))
    d.rectangle([lo, hi], outline=(200, 200, 200))
    gx, gy = px(goal)
    d.ellipse([gx - 6, gy - 6, gx + 6, gy + 6], fill=(40, 170, 70))
    if len(path) > 1:
        d.line([px(p) for p in path], fill=(60, 110, 220), width=2)
    ax, ay = px(path[-1])
    d.ellipse([ax - 4, ay - 4, ax + 4, ay + 4], fill=(220, 50, 50))
    return np.asarray(img)


def record_episode(policy: ActorCritic, task: Task, seed: int) -> Episode:
    """One stochastic episode of ``policy`` on ``task`` (env and action noise seeded by ``seed``), rendered
    frame by frame through the episode loop (:func:`~ssm_metarl.rl.evaluate.seeded_episodes`).

    Never raises for a family that cannot be drawn here: the episode then has no frames and a ``note``.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    dist = get_family(task.family)
    nav = task.family == "navigation-2d"
    ep = Episode()
    try:
        env = (
            dist.make_env(task, seed=seed) if nav else dist.make_env(task, seed=seed, render_mode="rgb_array")
        )
    except Exception as e:  # a renderer that needs a display or GL: say so, show the rest
        env, ep.note = dist.make_env(task, seed=seed), f"this environment cannot be rendered here ({e})"
    envs = SyncVectorEnv([lambda: env], autoreset_mode=AutoresetMode.SAME_STEP)
    path: list[np.ndarray] = []
    goal = np.array([task["goal_x"], task["goal_y"]]) if nav else np.zeros(2)

    def frame(obs: np.ndarray) -> None:
        if nav:
            path.append(np.asarray(obs[0], float))
            ep.frames.append(_nav_frame(goal, np.array(path)))
        elif not ep.note:
            try:
                ep.frames.append(np.asarray(env.render()))
            except Exception as e:  # same: no frames, a note instead
                ep.note, ep.frames = f"this environment cannot be rendered here ({e})", []

    try:
        episodes = seeded_episodes(envs, policy, seed, before_step=frame)
    finally:
        envs.close()
    ep.length, ep.ret = int(episodes.lengths[0]), float(episodes.returns[0])
    ep.frames = ep.frames[: ep.length]
    if nav:
        path[ep.length :] = [np.asarray(episodes.infos[0]["final_obs"], float)]
        ep.frames.append(_nav_frame(goal, np.array(path)))
    return ep


def _panel(frame: np.ndarray | None, title: str, done: bool) -> Image.Image:
    w, h = PANEL
    out = Image.new("RGB", (w, h + TITLE_H), (255, 255, 255))
    if frame is not None:
        img = Image.fromarray(frame).convert("RGB")
        img.thumbnail((w, h))
        if done:  # the episode is over: keep its last frame, faded
            img = Image.blend(img, Image.new("RGB", img.size, (255, 255, 255)), 0.5)
        out.paste(img, ((w - img.width) // 2, TITLE_H + (h - img.height) // 2))
    d = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=13)
    d.text((6, 2), title, fill=(20, 20, 20), font=font)
    if done:
        d.text((6, 16), "episode over", fill=(150, 30, 30), font=font)
    return out


def episodes_gif(panels: list[tuple[str, Episode]], path: str | Path, fps: int = 25) -> Path:
    """Write the episodes side by side as one looping GIF: one panel each, titled, played in step."""
    longest = max((len(ep.frames) for _, ep in panels), default=0)
    if longest == 0:
        raise ValueError("no frames to animate")
    stride = max(1, -(-longest // MAX_FRAMES))  # ceil
    images = []
    for t in range(0, longest, stride):
        row = [
            _panel(ep.frames[min(t, len(ep.frames) - 1)] if ep.frames else None, title, t >= len(ep.frames))
            for title, ep in panels
        ]
        canvas = Image.new("RGB", (PANEL[0] * len(row), PANEL[1] + TITLE_H), (255, 255, 255))
        for i, img in enumerate(row):
            canvas.paste(img, (i * PANEL[0], 0))
        images.append(canvas.quantize(colors=64))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = int(1000 * stride / fps)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=True)
    return path


__all__ = ["Episode", "episodes_gif", "record_episode"]
