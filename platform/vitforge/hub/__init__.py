"""Public checkpoints in (``vitforge import``) and Hugging Face folders out (``vitforge export --format hf``)."""

from vitforge.hub.importer import import_checkpoint
from vitforge.hub.read import CheckpointError
from vitforge.hub.to_hf import export_hf

__all__ = ["CheckpointError", "export_hf", "import_checkpoint"]
