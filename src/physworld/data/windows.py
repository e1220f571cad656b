"""Training windows ``(obs[T+1], actions[T], states[T+1])`` cut from an episode store."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from physworld.data.store import DatasetError, EpisodeStore


class Windows:
    """Every window of ``length`` actions inside an episode, sampled as shuffled batches.

    Episodes are concatenated once into flat arrays so a batch is a single fancy-index gather.
    """

    def __init__(self, store: EpisodeStore, length: int):
        if length < 1:
            raise ValueError(f"window length must be at least 1, got {length}")
        self.store, self.length, self.meta = store, length, store.meta
        usable = [e for e in store.episodes if len(e) >= length]
        if not usable:
            longest = max((len(e) for e in store.episodes), default=0)
            raise DatasetError(
                f"{store.path}: no episode has {length} steps (longest: {longest}); use a shorter window"
            )
        frame_offsets = np.cumsum([0] + [len(e) + 1 for e in usable])
        action_offsets = np.cumsum([0] + [len(e) for e in usable])
        self._obs = np.concatenate([e.obs for e in usable])
        self._states = np.concatenate([e.states for e in usable])
        self._actions = np.concatenate([e.actions for e in usable])
        # (first frame index, first action index) of every window
        starts = [
            (frame_offsets[k] + s, action_offsets[k] + s)
            for k, e in enumerate(usable)
            for s in range(len(e) - length + 1)
        ]
        self._starts = np.asarray(starts, dtype=np.int64)
        self.pixels = self._obs.ndim == 4

    def __len__(self) -> int:
        return len(self._starts)

    def gather(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        """The windows at ``index`` as a batch of tensors (pixels channels-first, uint8)."""
        frames = self._starts[index, :1] + np.arange(self.length + 1)
        steps = self._starts[index, 1:] + np.arange(self.length)
        obs = torch.from_numpy(self._obs[frames])
        if self.pixels:
            obs = obs.permute(0, 1, 4, 2, 3).contiguous()
        return {
            "obs": obs,
            "actions": torch.from_numpy(self._actions[steps]),
            "states": torch.from_numpy(self._states[frames]),
        }

    def batches(
        self, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Endless shuffled batches; rank ``r`` of ``world_size`` sees its own shard.

        ``start`` skips that many batches, so a resumed run sees exactly what it would have.
        """
        per_epoch = max(1, len(self) // (batch_size * world_size))
        epoch, skip = divmod(start, per_epoch)
        while True:
            order = np.random.default_rng([seed, epoch]).permutation(len(self))
            if len(order) < batch_size * world_size:  # tiny data: sample with replacement
                order = np.random.default_rng([seed, epoch]).integers(0, len(self), batch_size * world_size)
            shard = order[rank::world_size]
            for b in range(skip, per_epoch):
                yield self.gather(shard[b * batch_size : (b + 1) * batch_size])
            epoch, skip = epoch + 1, 0
