"""The one-line report of an unexpected error: the innermost message, also from wrapped text."""

from vitforge.cli_util import one_line


def test_innermost_error_of_a_chain() -> None:
    try:
        try:
            raise FileNotFoundError("runs/x/exports/0-mae is not a vitforge export")
        except FileNotFoundError as e:
            raise RuntimeError("replica failed to start") from e
    except RuntimeError as e:
        assert one_line(e) == "FileNotFoundError: runs/x/exports/0-mae is not a vitforge export"


def test_last_error_line_of_a_wrapped_worker_traceback() -> None:
    text = (
        "Training failed due to worker errors:\n[Rank 0]\nTraceback (most recent call last):\n"
        '  File "loop.py", line 166, in run_stage\n'
        "vitforge.train.loop.NonFiniteLoss: stage mae: loss is nan at step 3 (epoch 0); stopping\n"
    )
    assert one_line(RuntimeError(text)) == "NonFiniteLoss: stage mae: loss is nan at step 3 (epoch 0); stopping"


def test_plain_error_keeps_its_type() -> None:
    assert one_line(ValueError("bad")) == "ValueError: bad"
    assert one_line(KeyError()) == "KeyError"
