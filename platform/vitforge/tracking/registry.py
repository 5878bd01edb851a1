"""The model registry: an export logged as an MLflow pyfunc model, registered, and described."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import vitforge
from vitforge.tracking.store import Tracker, use_tracking_uri


def _pyfunc_class():
    import mlflow.pyfunc

    class EncoderModel(mlflow.pyfunc.PythonModel):
        """``predict(images)``: uint8 (N, H, W, 3) -> L2-normalized embeddings (N, D), float32.

        Loads the vitforge export (safetensors + model card) shipped as the ``export`` artifact.
        """

        def load_context(self, context) -> None:
            from vitforge.inference import load_encoder

            self.model, self.card = load_encoder(context.artifacts["export"])

        def predict(self, context, model_input, params=None):

            from vitforge.inference import encode_images

            return encode_images(self.model, self.card, np.asarray(model_input)).numpy().astype("float32")

    return EncoderModel


def register_encoder(
    tracker: Tracker,
    run_id: str | None,
    export_dir: str | Path,
    name: str,
    alias: str | None = None,
    metrics: dict[str, float] | None = None,
    description: str | None = None,
) -> str | None:
    """Log the export as an MLflow pyfunc model in ``run_id`` and register it as ``name``, the
    version tagged with ``metrics`` and described by ``description`` (see :func:`describe_stage`).

    Returns the registered version (``models:/NAME/VERSION``, ``models:/NAME/latest``, and
    ``models:/NAME@alias`` when ``alias`` is given), or None when tracking is unavailable.
    """
    import mlflow
    from mlflow.models import infer_signature

    from vitforge.inference import encode_images, load_encoder

    if not run_id:
        return None
    model, card = load_encoder(export_dir)
    size = card["model"]["img_size"]
    example = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    signature = infer_signature(example, encode_images(model, card, example).numpy())
    code = str(Path(vitforge.__file__).parent)

    def log() -> str:
        with use_tracking_uri(tracker.uri), mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="encoder",
                python_model=_pyfunc_class()(),
                artifacts={"export": str(export_dir)},
                signature=signature,
                input_example=example,
                code_paths=[code],
                # Listing requirements skips a slow environment inference.
                pip_requirements=["torch", "numpy", "safetensors", "pydantic", "pyyaml", "pillow"],
                registered_model_name=name,
            )
        return str(info.registered_model_version)

    version = tracker._safe("register_model", log)
    if version and alias:
        tracker._safe("set_alias", lambda: tracker.client.set_registered_model_alias(name, alias, version))
    if version:
        annotate_version(tracker, name, version, metrics or {}, description, append=False)
    return version


def describe_stage(
    job: str, stage: str, method: str, data: str, export_dir: str | Path, metrics: dict[str, float]
) -> str:
    """A model version's description (Markdown in the MLflow UI): what was trained, how, on what,
    where its files are, and its numbers."""
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "none"
    return (
        f"vitforge job `{job}`, stage `{stage}` (method: {method}).\n\n"
        f"Data: {data}.\n\nExport: `{export_dir}`.\n\nFinal metrics: {numbers}."
    )


def annotate_version(
    tracker: Tracker,
    name: str,
    version: str,
    metrics: dict[str, float],
    description: str | None = None,
    append: bool = True,
) -> None:
    """``metrics`` as tags of model version ``name``/``version``; ``description`` set, or with
    ``append`` added as a paragraph after the one it has."""
    client = tracker.client
    for k, v in metrics.items():
        tracker._safe("set_model_version_tag", lambda k=k, v=v: client.set_model_version_tag(name, version, k, str(v)))
    if not description:
        return
    if append:
        current = tracker._safe("get_model_version", lambda: client.get_model_version(name, version))
        if current is not None and current.description:
            description = f"{current.description}\n\n{description}"
    tracker._safe("update_model_version", lambda: client.update_model_version(name, version, description))


def versions_of_run(tracker: Tracker, run_id: str) -> list[tuple[str, str]]:
    """(name, version) of every registered model version made from ``run_id``."""
    found = tracker._safe("search_model_versions", lambda: tracker.client.search_model_versions(f"run_id = '{run_id}'"))
    return [(v.name, str(v.version)) for v in found or []]
