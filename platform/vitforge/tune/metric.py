"""Which number a search ranks trials by: the one place ``tune.metric: null`` ("auto") is decided.

Held-out k-NN accuracy (``knn20``) is what a pretrained encoder is for, so it is the default
wherever it can mean something; the stage's own loss (``epoch_loss``) is the fallback where it
cannot: unlabelled data, no held-out split, or a stage that does not change the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitforge.config import JobSpec

DESCRIPTIONS = {
    "knn20": "held-out k-NN, higher is better",
    "epoch_loss": "the stage's mean training loss per epoch, lower is better",
}
MODES = {"knn20": "max", "epoch_loss": "min"}


@dataclass(frozen=True)
class SearchMetric:
    name: str  # a key of the trials' reports
    mode: str  # "max" or "min", for Tune
    reason: str  # why this one: "set in the spec", or what ruled k-NN out

    def line(self) -> str:
        """What the search prints at its start, e.g. ``metric: knn20 (held-out k-NN, higher is better)``."""
        how = "" if self.reason == "set in the spec" else f"; {self.reason}"
        return f"metric: {self.name} ({DESCRIPTIONS[self.name]}{how})"


def resolve_metric(spec: JobSpec) -> SearchMetric:
    """``spec.tune.metric``, or when it is ``None`` the best one this search can measure."""
    t = spec.tune
    if t is not None and t.metric is not None:
        return SearchMetric(t.metric, MODES[t.metric], "set in the spec")
    i = (t.stage if t else -1) % len(spec.stages)
    stage = spec.stages[i].name
    if stage == "nnclr_head":
        # tasks.NNCLRTask freezes the whole encoder in stage 2 (whatever frozen_blocks says):
        # its k-NN cannot move, so only the head's loss tells trials apart.
        why = "auto: nnclr_head trains the head on a frozen encoder, whose k-NN cannot change"
    elif spec.data.label_column is None:
        why = "auto: the data has no labels (data.label_column is null)"
    elif spec.data.eval_split == spec.data.split:
        why = f"auto: no held-out split (data.eval_split is the training split {spec.data.split!r})"
    else:
        return SearchMetric("knn20", "max", f"auto: labelled data, held-out split {spec.data.eval_split!r}")
    return SearchMetric("epoch_loss", "min", why)
