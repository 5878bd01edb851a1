"""The ``vitforge`` command. The only module that parses command-line arguments."""

from __future__ import annotations

import json
import math

import typer

import vitforge
from vitforge import submit as sub
from vitforge.cli_data import data_app
from vitforge.cli_serve import serve_app
from vitforge.cli_util import SET_OPTION, fail, run_cli, spec_or_exit

# Errors: one line (cli_util.run_cli), the traceback in a file or with --debug.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vitforge {vitforge.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Pretrain (MAE-CT, CLOOB), tune, evaluate and serve ViT encoders on Ray.

    Errors print one line; add --debug anywhere for the traceback.
    """


app.add_typer(data_app, name="data")
app.add_typer(serve_app, name="serve")


@app.command()
def train(
    spec: str = typer.Argument(..., help="Job spec YAML (see jobs/)."),
    overrides: list[str] = SET_OPTION,
    address: str = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete this job's earlier checkpoints and exports first."),
) -> None:
    """Run every stage of a job spec on Ray Train with DeepSpeed; export after each stage.

    Re-running the same job (same name, storage and spec) resumes it; a changed spec stops with
    the fields that differ (use --fresh, or another name).

    Example: vitforge train jobs/tiny-mae-ct.yaml --set deepspeed.zero_stage=3
    """
    from rich.console import Console
    from rich.markup import escape

    from vitforge.train.resume import SpecChanged
    from vitforge.train.run import run_job
    from vitforge.train.story import summary

    job = spec_or_exit(spec, overrides)
    console = Console()

    def log(msg: str) -> None:  # soft_wrap: a long path wraps in the terminal, not cut into lines
        console.print(f"[bold cyan]vitforge[/] {escape(msg)}", soft_wrap=True)

    try:
        results = run_job(job, log=log, show=True, fresh=fresh, address=address)
    except SpecChanged as e:
        raise fail(str(e)) from None
    # Plain lines, not a table: a table cuts the export paths to the terminal's width.
    typer.echo("\n".join([f"job {job.name} done:", *summary(job, results)]))


config_app = typer.Typer(no_args_is_help=True, help="The job spec schema.")
app.add_typer(config_app, name="config")
jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a Ray cluster: list, status, logs, stop.")
app.add_typer(jobs_app, name="jobs")


@config_app.command("schema")
def config_schema() -> None:
    """Print the job spec's JSON Schema (every field, type, default and allowed value).

    Example: vitforge config schema > jobspec.schema.json
    """

    from vitforge.config import JobSpec

    typer.echo(json.dumps(JobSpec.model_json_schema(), indent=2))


@config_app.command("validate")
def config_validate(
    spec: str = typer.Argument(..., help="Job spec YAML."),
    overrides: list[str] = SET_OPTION,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Also check the data (one sample decodes), resources, storage and MLflow."
    ),
) -> None:
    """Validate a spec (with overrides) and print it fully resolved; --dry-run checks what can be
    checked before a job starts (exit 2 if any check fails).

    Example: vitforge config validate jobs/mae-ct-vit-b16.yaml --set scaling.num_workers=16 --dry-run
    """
    from vitforge.config import dump_spec

    job = spec_or_exit(spec, overrides)
    typer.echo(dump_spec(job), nl=False)
    if dry_run:
        from vitforge.train.preflight import preflight

        typer.echo("---")
        if not preflight(job, log=typer.echo):
            raise typer.Exit(2)


@app.command("tune")
def tune_cmd(
    spec: str = typer.Argument(..., help="Job spec YAML with a 'tune' section (see jobs/tiny-ttur.yaml)."),
    overrides: list[str] = SET_OPTION,
    address: str = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete this search's earlier trials first."),
) -> None:
    """Search TTUR (fast, slow) learning-rate pairs of one stage with Ray Tune (ASHA by default).

    Writes trials.json, heatmap.png and best_job.yaml (a runnable spec with the best pair) under
    <storage>/<name>-tune/; re-running the same spec resumes an interrupted search (a changed spec
    stops with the fields that differ: use --fresh, or another name).

    Example: vitforge tune jobs/tiny-ttur.yaml --set tune.num_samples=8
    """
    from rich.console import Console
    from rich.table import Table

    from vitforge.tune import run_search

    job = spec_or_exit(spec, overrides)
    if job.tune is None:
        raise fail(f"{spec} has no 'tune' section")
    from vitforge.train.resume import SpecChanged

    try:
        res = run_search(job, log=typer.echo, fresh=fresh, address=address)
    except SpecChanged as e:
        raise fail(str(e)) from None
    from vitforge.tune.report import rungs
    from vitforge.tune.search import stage_index

    # Ranked at the largest budget the trials share (ASHA's rungs shown apart); a value is the
    # metric at that epoch, the last column the trial's end.
    steps = rungs(job, max(1, math.ceil(job.stages[stage_index(job)].epochs)))
    table = Table(title=f"TTUR search {job.name}: {res.metric} (best first, at equal budget)")
    for col in ("trial", "fast lr", "slow lr", *(f"@{e} ep" for e in steps), "epochs", "status"):
        table.add_column(col)
    for r in res.table:
        at = [f"{r['history'][e - 1]:.4f}" if len(r.get("history", [])) >= e else "" for e in steps]
        table.add_row(r["trial_id"], f"{r['fast_lr']:.2e}", f"{r['slow_lr']:.2e}", *at, str(r["epochs"]),
                      r["status"] if not r["error"] else f"ERROR: {r['error'][:40]}")  # fmt: skip
    Console().print(table)
    typer.echo(
        f"heatmap {res.heatmap_path}\nbest spec {res.best_spec_path}\ncompute {res.compute_worker_s:.0f} worker-s"
    )


@app.command()
def submit(
    spec: str = typer.Argument(..., help="Job spec YAML."),
    overrides: list[str] = SET_OPTION,
    address: str = typer.Option(None, envvar="RAY_ADDRESS", help="Ray dashboard address, e.g. http://HEAD:8265."),
    follow: bool = typer.Option(True, help="Stream the job's logs until it ends."),
) -> None:
    """Submit a job spec to a Ray cluster (JobSubmissionClient) and follow its logs.

    The submission id is vitforge-<job name>: re-submitting a running job follows it; re-submitting
    a finished one starts the next attempt, which resumes from the job's checkpoints. Exit code 0
    when the job SUCCEEDED, 1 when it FAILED or was STOPPED. RAY_AUTH_TOKEN is sent when set.

    Example: vitforge submit jobs/mae-ct-vit-b16.yaml --address http://head:8265
    """

    job = spec_or_exit(spec, overrides)
    try:
        sid, new = sub.submit(job, address, log=typer.echo)
    except ValueError as e:
        raise fail(str(e)) from None
    except Exception as e:
        raise fail(f"cannot submit to {address or 'RAY_ADDRESS'}: {e}") from None
    typer.echo(f"{'submitted' if new else 'following running job'} {sid}")
    if follow:
        status = sub.follow(sid, address, out=typer.echo)
        typer.echo(f"job {sid}: {status}")
        raise typer.Exit(0 if status == "SUCCEEDED" else 1)


# Shared by the jobs subcommands.
_SID = typer.Argument(..., help="Submission id: vitforge-<job name> for `vitforge submit` (see `vitforge jobs list`).")
_ADDRESS = typer.Option(None, envvar="RAY_ADDRESS", help="Ray dashboard address, e.g. http://HEAD:8265.")


def _jobs_client(address: str | None):

    try:
        return sub.client(address)
    except Exception as e:
        raise fail(str(e)) from None


@jobs_app.command("list")
def jobs_list(address: str = _ADDRESS) -> None:
    """List submitted jobs with their status. Example: vitforge jobs list --address http://head:8265"""
    for j in _jobs_client(address).list_jobs():
        typer.echo(f"{j.submission_id or j.job_id}\t{j.status}\t{(j.entrypoint or '')[:60]}")


@jobs_app.command("status")
def jobs_status(sid: str = _SID, address: str = _ADDRESS) -> None:
    """Print a job's status (exit 1 if FAILED/STOPPED). Example: vitforge jobs status vitforge-quickstart"""
    status = str(_jobs_client(address).get_job_status(sid)).split(".")[-1]
    typer.echo(status)
    raise typer.Exit(1 if status in ("FAILED", "STOPPED") else 0)


@jobs_app.command("logs")
def jobs_logs(
    sid: str = _SID,
    address: str = _ADDRESS,
    follow: bool = typer.Option(False, "--follow", help="Stream the logs until the job ends."),
) -> None:
    """Print (or --follow) a job's logs. Example: vitforge jobs logs vitforge-quickstart --follow"""

    if follow:
        sub.follow(sid, address, out=typer.echo)
    else:
        typer.echo(_jobs_client(address).get_job_logs(sid), nl=False)


@jobs_app.command("stop")
def jobs_stop(sid: str = _SID, address: str = _ADDRESS) -> None:
    """Stop a running job. Example: vitforge jobs stop vitforge-quickstart"""
    typer.echo("stop requested" if _jobs_client(address).stop_job(sid) else "job was not running")


@app.command("eval")
def eval_cmd(
    model_ref: str = typer.Argument(
        ..., help="An export folder, or a registered model: models:/NAME/VERSION or models:/NAME@alias."
    ),
    source: str = typer.Argument("digits-cluttered", help="Dataset with a train and a test split."),
    train_split: str = typer.Option("train", help="Split the k-NN index and the probe are fitted on."),
    test_split: str = typer.Option("test", help="Split the metrics are measured on."),
    out_dir: str = typer.Option("eval", help="Where metrics.json and the plots go."),
    probe: bool = typer.Option(True, help="Run the linear probe."),
    class_names: str = typer.Option(
        None, help="Zero-shot classes, comma-separated, in label order (default: the source's own names)."
    ),
    template: list[str] = typer.Option(
        None, help='Zero-shot prompt with {} for the class (repeatable; averaged), e.g. "a photo of a {}."'
    ),
    option: list[str] = typer.Option(
        None, help="A built-in's data option as the job's data.builtin_options (repeatable): --option clutter=0"
    ),
) -> None:
    """k-NN, linear probe, clustering (and zero-shot for CLOOB/CLIP) of a trained encoder.

    Zero-shot needs class names: an image folder's sub-folders, a built-in's, those `data prepare`
    recorded, or --class-names. A built-in is generated at the encoder's image size with --option's
    values: evaluate on the data the job trained on (the quickstart: --option clutter=0).

    Example: vitforge eval ./runs/tiny-cloob/exports/0-cloob ./pets --template "a photo of a {}."
    Example: vitforge eval ./runs/quickstart/exports/2-contrastive_tuning --option clutter=0
    """
    from vitforge.config import parse_overrides
    from vitforge.data import DataError
    from vitforge.data.builtin import BUILTINS
    from vitforge.eval.evaluate import evaluate

    names = [c.strip() for c in class_names.split(",") if c.strip()] if class_names else None
    bad = [t for t in template or [] if t.count("{}") != 1]
    if bad:
        raise fail(f"--template must hold one {{}} for the class name; got {bad[0]!r}")
    malformed = [o for o in option or [] if "=" not in o]
    if malformed:
        raise fail(f"--option must look like KEY=VALUE (e.g. clutter=0); got {malformed[0]!r}")
    if option and source not in BUILTINS:
        raise fail(f"--option sets a built-in's data options ({', '.join(BUILTINS)}); {source!r} is not one")
    options = dict(parse_overrides(option))
    try:
        metrics = evaluate(
            model_ref, source, train_split, test_split, probe=probe, out_dir=out_dir, class_names=names,
            templates=template or None, builtin_options=options,
        )  # fmt: skip
    except (DataError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    for k, v in metrics.items():
        typer.echo(f"{k:>20}  {v:.4f}")
    typer.echo(f"plots and metrics.json in {out_dir}/")


@app.command("export")
def export_cmd(
    source: str = typer.Argument(..., help="--format hf: an export folder; else the job spec of the checkpoint."),
    target: str = typer.Argument(..., help="--format hf: the folder to write; else a stage's Ray Train checkpoint."),
    fmt: str = typer.Option("vitforge", "--format", help="vitforge: a checkpoint -> an export; hf: an export -> HF."),
    stage: int = typer.Option(0, help="Index of the stage in the spec (--format vitforge)."),
    init_from: str = typer.Option(None, help="The export the stage started from (shapes only; --format vitforge)."),
) -> None:
    """Write an export: a stage checkpoint (any ZeRO stage) consolidated into safetensors + model card,
    or (--format hf) an export's encoder as a Hugging Face folder that transformers.AutoModel loads.

    The HF folder is a ViTMAEModel with mask_ratio 0.0; pool its last_hidden_state as
    config.vitforge["pool"] says (cls: [:, 0]; mean_patch: [:, 1:].mean(1)).

    Example: vitforge export jobs/tiny-mae-ct.yaml runs/tiny-mae-ct-0-mae/checkpoint_... --stage 0
    Example: vitforge export runs/quickstart/exports/2-contrastive_tuning ./quickstart-hf --format hf
    """
    if fmt == "hf":
        from vitforge.hub import export_hf

        if stage or init_from:
            raise fail("--stage and --init-from belong to --format vitforge (a stage checkpoint)")
        try:
            out = export_hf(source, target)
        except (FileNotFoundError, ValueError) as e:
            raise fail(str(e)) from None
        typer.echo(f"wrote {out} (transformers.AutoModel.from_pretrained({str(out)!r}))")
        return
    if fmt != "vitforge":
        raise fail(f"--format {fmt!r}; allowed: vitforge, hf")
    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import export_stage

    job = spec_or_exit(source, None)
    norm = normalization_for(job, load_train_data(job))
    out = export_stage(job, stage, init_from, target, norm, {"from_checkpoint": target})
    typer.echo(f"wrote {out}")


@app.command("import")
def import_cmd(
    source: str = typer.Argument(..., help="An official MAE .pth, a HF ViTMAE/ViT folder or an ml-jku/MAE-CT .th."),
    out: str = typer.Argument(..., help="The export folder to write (what init_from, eval and serve take)."),
    img_size: int = typer.Option(None, "--img-size", help="Another resolution than the checkpoint's."),
    interpolate_pos: bool = typer.Option(
        False, "--interpolate-pos", help="Interpolate the positions to --img-size (else another size is refused)."
    ),
    pool: str = typer.Option(None, help="cls or mean_patch (default: the MAE-CT recipe's for the size)."),
    encoder_only: bool = typer.Option(False, "--encoder-only", help="Leave out the MAE decoder."),
) -> None:
    """Convert a public checkpoint into a vitforge export (encoder.safetensors [+ mae.safetensors]
    + model card), which every stage (init_from), vitforge eval and Serve accept as a stage export.

    Size, patch and image size come from the checkpoint; its positions must be MAE's fixed sin-cos
    table. Nothing is loaded partially: a missing, unexpected or misshapen tensor stops the import.

    Example: vitforge import mae_pretrain_vit_base.pth ./mae-b16 && vitforge train jobs/mae-ct-vit-b16-from-mae.yaml
    """
    from vitforge.hub import CheckpointError, import_checkpoint

    if pool not in (None, "cls", "mean_patch"):
        raise fail(f"--pool {pool!r}; allowed: cls, mean_patch")
    try:
        path = import_checkpoint(source, out, img_size, interpolate_pos, pool, encoder_only, log=typer.echo)
    except CheckpointError as e:
        raise fail(str(e)) from None
    typer.echo(f"wrote {path}")


@app.command()
def quickstart(
    spec: str = typer.Option(None, help="MAE-CT spec (default: jobs/quickstart.yaml's contents)."),
    cloob: bool = typer.Option(True, help="Also run the short CLOOB job on shapes."),
    seed: int = typer.Option(None, help="Seed of both jobs (default: the specs' own, 0)."),
) -> None:
    """The main job on the embedded default: local Ray, embedded MLflow, built-in data.

    MAE -> NNCLR head -> contrastive tuning of a tiny ViT on digits-cluttered and a short CLOOB on
    shapes; the MAE-CT encoder evaluated against MAE; registered in MLflow; a summary table and the
    commands to serve and query it.

    Example: vitforge quickstart
    """
    from vitforge.quickstart import run_quickstart

    run_quickstart(spec, cloob, echo=typer.echo, seed=seed)


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
