"""A job or search folder resumes only the spec it was started with."""

from pathlib import Path

import pytest

from vitforge.config import load_spec
from vitforge.train.resume import SpecChanged, fingerprint, guard, record, spec_diff


def spec(*overrides: str):
    return load_spec("tiny-mae-ct", list(overrides))


def test_diff_names_every_changed_leaf() -> None:
    a = fingerprint(spec())
    b = fingerprint(spec("stages.0.epochs=3", "stages.0.optimizer.fast_lr=0.01"))
    lines = spec_diff(a, b)
    assert len(lines) == 2
    assert any(x.startswith("stages.0.epochs: ") and x.endswith("-> 3.0") for x in lines), lines
    assert any(x.startswith("stages.0.optimizer.fast_lr: ") and x.endswith("-> 0.01") for x in lines), lines


def test_storage_tracking_and_name_do_not_count() -> None:
    a = fingerprint(spec())
    b = fingerprint(spec("checkpoint.keep=7", "tracking.log_every_steps=3", "name=other"))
    assert spec_diff(a, b) == []


def test_tune_section_counts_only_for_a_search() -> None:
    s = load_spec("tiny-ttur")
    t = load_spec("tiny-ttur", ["tune.num_samples=16"])
    assert spec_diff(fingerprint(s), fingerprint(t)) == []
    assert spec_diff(fingerprint(s, search=True), fingerprint(t, search=True)) == ["tune.num_samples: 8 -> 16"]


def test_guard_records_then_refuses_another_spec(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    guard(folder, spec(), has_work=False)
    guard(folder, spec("stages.0.epochs=9"), has_work=False)  # nothing recorded yet: any spec may start
    record(folder, spec())
    guard(folder, spec(), has_work=True)  # the same spec resumes
    with pytest.raises(SpecChanged) as e:
        guard(folder, spec("stages.1.queue_size=128"), has_work=True)
    msg = str(e.value)
    assert "stages.1.queue_size: " in msg and "--fresh" in msg and "--set name=" in msg


def test_guard_refuses_unrecorded_earlier_work(tmp_path: Path) -> None:
    (tmp_path / "job").mkdir()
    with pytest.raises(SpecChanged, match="no record of its spec"):
        guard(tmp_path / "job", spec(), has_work=True)


def test_a_field_added_since_the_record_at_its_null_default_is_no_change() -> None:
    old = fingerprint(spec())
    del old["model"]["pos_embed_grid"]  # a record written before the field existed
    assert spec_diff(old, fingerprint(spec())) == []
    assert spec_diff(old, fingerprint(spec("model.pos_embed_grid=2"))) == ['model.pos_embed_grid: "<absent>" -> 2']
