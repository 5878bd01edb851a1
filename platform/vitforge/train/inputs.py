"""A job's inputs: the training (or held-out) split, its mean/std, and each stage's batch maker
(decode, augment, tokenize). The driver, the workers and Tune's trials all build them here."""

from __future__ import annotations

from vitforge.config import JobSpec
from vitforge.data import BUILTINS, BatchMaker, Columns, Source, build_view, channel_stats, load_source
from vitforge.data.tokenizers import make_tokenizer


def make_batch_maker(
    spec: JobSpec, stage_index: int, normalization: dict, train: bool = True, normalize: bool = True
) -> BatchMaker:
    """``normalize=False``: images stay uint8 (the trainer normalizes them on its device)."""
    stage = spec.stages[stage_index]
    d = spec.data
    view = [
        build_view(
            spec.model.img_size,
            normalization["mean"],
            normalization["std"],
            scale=stage.crop_scale,
            interpolation=d.interpolation,
            flip=stage.flip,
            strong=getattr(stage, "strong_aug", False),
            train=train,
            normalize=normalize,
        )
    ] * stage.views
    tok = make_tokenizer(spec.model.tokenizer, spec.model.context_length) if stage.tokens else None
    return BatchMaker(view, d.source, tok, spec.seed, d.on_bad)


def load_train_data(spec: JobSpec, split: str | None = None) -> Source:
    """The spec's source planned (files and row counts, no rows): the one place a spec's data
    fields become a source, for training, evaluation hooks, Tune and the preflight alike."""
    d = spec.data
    return load_source(
        d.source,
        split or d.split,
        d.format,
        Columns(d.image_column, d.label_column, d.caption_column),
        require_captions=any(s.tokens for s in spec.stages),
        builtin_options=builtin_options(spec),
    )


def builtin_options(spec: JobSpec) -> dict | None:
    """The options a built-in source is generated with (its image size the model's), or None when
    the source is not a built-in."""
    builtin = spec.data.format == "builtin" or (spec.data.format is None and spec.data.source in BUILTINS)
    return {"size": spec.model.img_size, **spec.data.builtin_options} if builtin else None


def normalization_for(spec: JobSpec, ds: Source) -> dict[str, list[float]]:
    if spec.data.mean and spec.data.std:
        return {"mean": list(spec.data.mean), "std": list(spec.data.std)}
    mean, std = channel_stats(ds, max_images=512, seed=spec.seed, on_bad=spec.data.on_bad)
    return {"mean": mean, "std": std}
