"""Data: sources (HF datasets), built-in offline datasets, torch transforms, Ray Data glue."""

from vitforge.data.builtin import BUILTINS, CLASS_NAMES
from vitforge.data.pipeline import BatchMaker, iter_batches, to_ray
from vitforge.data.sources import DataError, detect_format, load_image, load_source
from vitforge.data.stats import channel_stats, export_builtin
from vitforge.data.transforms import build_view

__all__ = [
    "BUILTINS",
    "CLASS_NAMES",
    "BatchMaker",
    "DataError",
    "build_view",
    "channel_stats",
    "detect_format",
    "export_builtin",
    "iter_batches",
    "load_image",
    "load_source",
    "to_ray",
]
