"""vitforge: ViT pretraining (MAE-CT, CLOOB) on Ray, sharded with DeepSpeed."""

__version__ = "0.1.0"
