"""Data: sources planned from metadata, built-in offline datasets, torch transforms, and the
stream that reads them window by window (Ray Data on the cluster, or in process)."""

from vitforge.data.builtin import BUILTINS, CLASS_NAMES
from vitforge.data.pipeline import BatchMaker
from vitforge.data.sources import Columns, DataError, Source, detect_format, load_image, load_source
from vitforge.data.stats import channel_stats, export_builtin, sample_rows
from vitforge.data.stream import WINDOW_ROWS, iter_batches, iter_rows, rank_dataset, rank_rows
from vitforge.data.transforms import build_view

__all__ = [
    "BUILTINS",
    "CLASS_NAMES",
    "WINDOW_ROWS",
    "BatchMaker",
    "Columns",
    "DataError",
    "Source",
    "build_view",
    "channel_stats",
    "detect_format",
    "export_builtin",
    "iter_batches",
    "iter_rows",
    "load_image",
    "load_source",
    "rank_dataset",
    "rank_rows",
    "sample_rows",
]
