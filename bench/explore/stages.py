"""Exploration: a job spec's stages in process with plain AdamW (no Ray, no DeepSpeed), k-NN and
clustering on the held-out split after each stage, beside raw pixels and a random encoder.

The exploratory numbers in the issue-15 closing note come from here, e.g.

    python -m bench.explore.digit_folder /tmp/digit-folder 3 centred   # or jittered
    python -m bench.explore.stages jobs/quickstart.yaml data.source=/tmp/digit-folder model.img_size=28

Arguments after the spec are ``--set``-style overrides; ``ONLY=012`` picks stages; ``CACHE=DIR``
saves the weights after each stage and starts a picked stage from the saved previous one. ``SELF=1``
replaces the NN lookup by the anchor's own projection (SimCLR-like positives, a diagnostic).
"""

from __future__ import annotations

import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from vitforge.config import load_spec
from vitforge.data import iter_batches
from vitforge.data.tokenizers import make_tokenizer
from vitforge.eval.cluster import cluster_scores
from vitforge.eval.features import extract_features
from vitforge.eval.knn import knn_accuracy
from vitforge.inference import build_encoder
from vitforge.models.nnclr_head import NNQueue
from vitforge.train.inputs import load_train_data, make_batch_maker, normalization_for
from vitforge.train.loop import plan
from vitforge.train.schedule import apply_lrs, base_lrs, lr_factor
from vitforge.train.tasks import build_task


def main(argv: list[str]) -> None:
    spec_path, *rest = argv
    only = next((a.removeprefix("ONLY=") for a in rest if a.startswith("ONLY=")), None)
    spec = load_spec(spec_path, [a for a in rest if not a.startswith("ONLY=")])
    if os.environ.get("SELF"):
        NNQueue.nearest = lambda self, q, ids, topk=1, generator=None: F.normalize(q, dim=-1)
    ds, test = load_train_data(spec), load_train_data(spec, spec.data.eval_split)
    card = {"model": spec.model.model_dump(), "normalization": normalization_for(spec, ds)}

    def evaluate(enc, tag: str) -> None:
        tr, te = extract_features(enc, card, ds), extract_features(enc, card, test)
        knn, clu = knn_accuracy(*tr, *te, k=20), cluster_scores(te[0], te[1])["cluster_accuracy"]
        print(f"EVAL {tag}: knn20 {knn:.3f} cluster {clu:.3f}", flush=True)

    print(f"train {len(ds)}, test {len(test)}")
    evaluate(None, "raw pixels")
    torch.manual_seed(spec.seed)
    evaluate(build_encoder(spec.model), "random init")
    enc_state = head_state = None
    cache = os.environ.get("CACHE")
    for i, stage in enumerate(spec.stages):
        if only is not None and str(i) not in only:
            continue
        if cache and enc_state is None and os.path.exists(f"{cache}/{i - 1}.pt"):
            enc_state, head_state = torch.load(f"{cache}/{i - 1}.pt", weights_only=True)
        t0 = time.time()
        task = build_task(spec, i, None)
        enc = task.exports()["encoder"]
        if enc_state is not None:
            enc.load_state_dict(enc_state)
        if head_state is not None and stage.name == "contrastive_tuning":
            task.head.load_state_dict(head_state)
            task.head.reset_target()
        base, opt = base_lrs(stage), stage.optimizer
        groups = task.param_groups(base["fast"], base["slow"], opt.weight_decay)
        meta = [(g["group"], g["lr_scale"]) for g in groups]
        clean = [{k: v for k, v in g.items() if k not in ("group", "lr_scale")} for g in groups]
        optim = torch.optim.AdamW(clean, betas=opt.betas)
        maker = make_batch_maker(spec, i, card["normalization"])
        spe = plan(spec, i, len(ds), 1)[0]
        total, warm = math.ceil(stage.epochs * spe), round(opt.warmup_epochs * spe)
        step, losses = 0, []
        task.train()
        while step < total:
            for b in iter_batches(
                ds, maker, stage.global_batch_size, step // spe, drop_last=True, window_rows=spec.data.window_rows
            ):
                apply_lrs(optim, meta, base, lr_factor(step, total, warm, opt.min_lr_ratio))
                task.set_epoch(step / spe)
                loss = task(b)
                optim.zero_grad()
                loss.backward()
                optim.step()
                task.after_step()
                with torch.no_grad():
                    for param, high in task.upper_bounds():  # plain AdamW: the module holds the master
                        param.clamp_(max=high)
                losses.append(loss.item())
                step += 1
                if step >= total:
                    break
            epoch_loss = sum(losses[-spe:]) / len(losses[-spe:])
            print(f"  [{stage.name}] epoch {step / spe:.1f} loss {epoch_loss:.4f} {time.time() - t0:.0f}s", flush=True)
        enc_state = {k: v.clone() for k, v in enc.state_dict().items()}
        if hasattr(task, "head"):
            head_state = {k: v.clone() for k, v in task.head.state_dict().items()}
        if cache:
            os.makedirs(cache, exist_ok=True)
            torch.save((enc_state, head_state), f"{cache}/{i}.pt")
        evaluate(enc.eval(), f"after {i}-{stage.name} ({time.time() - t0:.0f}s)")
        if "model" in task.exports() and test.classes and spec.data.source != "shapes":
            from vitforge.eval.zeroshot import DEFAULT_TEMPLATES, class_embeddings, zero_shot

            templates = os.environ["TEMPLATES"].split("|") if os.environ.get("TEMPLATES") else DEFAULT_TEMPLATES
            model = task.exports()["model"].eval()
            x, y = extract_features(model, card, test)
            tok = make_tokenizer(spec.model.tokenizer, spec.model.context_length)
            scores = zero_shot(x, y, class_embeddings(model, tok, test.classes, templates))
            print(f"ZEROSHOT after {i}-{stage.name}: {scores}")
        if "model" in task.exports() and spec.data.source == "shapes":
            from vitforge.eval.zeroshot import shapes_scores

            zcard = {**card, "tokenizer": make_tokenizer(spec.model.tokenizer, spec.model.context_length).config()}
            print(f"ZEROSHOT after {i}-{stage.name}: {shapes_scores(task.exports()['model'].eval(), zcard, test)}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1:])
