"""Collection, the on-disk episode store, and training windows."""

from physworld.data.collect import CollectConfig, collect
from physworld.data.store import DatasetError, Episode, EpisodeStore, EpisodeWriter
from physworld.data.windows import Windows

__all__ = ["CollectConfig", "collect", "DatasetError", "Episode", "EpisodeStore", "EpisodeWriter", "Windows"]
