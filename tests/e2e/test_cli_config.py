"""``vitforge config`` and the shipped quickstart spec."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitforge.cli", *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def test_schema_lists_fields_and_allowed_values() -> None:
    r = run("config", "schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert "stages" in schema["properties"] and "DeepSpeedSpec" in schema["$defs"]
    assert schema["$defs"]["DeepSpeedSpec"]["properties"]["zero_stage"]["enum"] == [0, 1, 2, 3]


def test_validate_resolves_overrides_and_names_bad_fields() -> None:
    r = run("config", "validate", str(ROOT / "jobs" / "mae-ct-vit-b16.yaml"), "--set", "scaling.num_workers=16")
    assert r.returncode == 0 and "num_workers: 16" in r.stdout
    bad = run("config", "validate", str(ROOT / "jobs" / "tiny-cloob.yaml"), "--set", "model.pool=max")
    assert bad.returncode == 2 and "model.pool" in bad.stderr and "'cls' or 'mean_patch'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_every_command_has_help_with_example() -> None:
    for cmd in (["train"], ["submit"], ["quickstart"], ["eval"], ["export"], ["import"], ["serve", "up"],
                ["serve", "embed"], ["serve", "gallery"], ["data", "export"], ["jobs", "logs"],
                ["config", "schema"]):  # fmt: skip
        r = run(*cmd, "--help")
        assert r.returncode == 0 and "Example" in r.stdout, cmd
    assert run("train", "-h").stdout == run("train", "--help").stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("vitforge ")


def test_shipped_specs_load_by_name_from_the_package() -> None:
    import pytest

    from vitforge.config import SpecError, load_spec, shipped_jobs
    from vitforge.quickstart import default_spec

    assert {"quickstart", "quickstart-cloob", "tiny-mae-ct"} <= set(shipped_jobs())
    # jobs/ in the checkout is the package's own folder: one copy of every spec.
    assert (ROOT / "jobs").resolve() == (ROOT / "platform" / "vitforge" / "jobs").resolve()
    assert load_spec("quickstart") == default_spec() == load_spec("quickstart.yaml")
    with pytest.raises(SpecError, match=r"shipped specs: .*quickstart"):
        load_spec("no-such-job")


def test_dry_run_checks_data_and_resources_before_a_job() -> None:
    good = run("config", "validate", "tiny-mae-ct", "--dry-run")
    assert good.returncode == 0 and "✓ data: 1438 examples, 10 classes" in good.stdout, good.stdout[-2000:]
    bad = run("config", "validate", "tiny-mae-ct", "--dry-run", "--set", "data.source=/no/such",
              "--set", "scaling.num_workers=64")  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "✗ data: data source '/no/such' does not exist" in bad.stdout
    assert "✗ resources: 64 workers" in bad.stdout
