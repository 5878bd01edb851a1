"""Image–caption stand-ins for the labelled sets we do not have: a digit folder
(``bench.explore.digit_folder``) rewritten as Parquet (``image``, ``caption``, ``label``) whose
captions come from several templates that name the class, as a user's templated captions would.

    python -m bench.explore.caption_set OUT [COPIES] [centred|jittered|mnist] [SEED]

``mnist`` takes the 5,000 real MNIST digits of ``bench.explore.mnist_folder`` (4,000 train, 1,000
test; COPIES is ignored) in place of the scikit-learn digits.

Writes ``OUT/train.parquet`` and ``OUT/test.parquet`` and prints the class names and templates to
pass to ``vitforge eval EXPORT OUT --class-names ... --template ...``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.explore import digit_folder, mnist_folder

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = [
    "a photo of the number {}.",
    "a handwritten {}.",
    "the digit {}, written by hand.",
    "a scan of a handwritten {}.",
    "a black and white image of a {}.",
]


def make(out: Path, copies: int = 3, kind: str = "centred", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "mnist":
            mnist_folder.write(Path(tmp), seed=seed)
        else:
            digit_folder.write(Path(tmp), copies, kind)
        out.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            rows = sorted(Path(tmp, split).glob("*/*.png"))
            order = rng.permutation(len(rows))  # a corpus is not sorted by class
            labels = [int(rows[i].parent.name) for i in order]
            table = pa.table(
                {
                    "image": [rows[i].read_bytes() for i in order],
                    "caption": [TEMPLATES[rng.integers(len(TEMPLATES))].format(NAMES[y]) for y in labels],
                    "label": pa.array(labels, pa.int64()),
                }
            )
            pq.write_table(table, out / f"{split}.parquet", row_group_size=256)
            (out / f"{split}.json").write_text(
                json.dumps({"classes": NAMES, "templates": TEMPLATES})
            )  # as data prepare
    print(f"wrote {out}: --class-names {','.join(NAMES)} " + " ".join(f'--template "{t}"' for t in TEMPLATES))


if __name__ == "__main__":
    a = sys.argv[1:]
    make(Path(a[0]), int(a[1]) if len(a) > 1 else 3, a[2] if len(a) > 2 else "centred", int(a[3]) if len(a) > 3 else 0)
