"""The `ecgtl` command line. Commands parse options and call library functions; nothing else lives here."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path

import click

from ecgtl import __version__
from ecgtl.errors import EcgtlError
from ecgtl.redaction import printable, redact


class _Group(click.Group):
    """Prints an `EcgtlError`, or a command line click cannot parse (an unknown option, a value that is not one of
    an option's choices), as one line on stderr and exits 2, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EcgtlError as exc:
            click.echo(f"error: {printable(redact(str(exc)), lines=False)}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {printable(redact(message), lines=False)} (see '{command} --help')", err=True)
            ctx.exit(2)


def manual_location() -> str:
    """Where the manual is: the built site when there is one, else the Markdown it is built from."""
    root = Path(__file__).resolve().parents[1]
    if (root / "site" / "index.html").exists():
        return str(root / "site" / "index.html")
    if (root / "docs" / "index.md").exists():
        return f"{root / 'docs'} (Markdown; `mkdocs build` in {root} makes site/index.html)"
    return "docs/ of the ecgtl source tree (mkdocs build)"


@click.group(cls=_Group, epilog=f"Manual: {manual_location()}")
@click.version_option(__version__, prog_name="ecgtl")
def cli() -> None:
    """ecgtl: transfer learning on 12-lead ECGs (PTB-XL -> G12EC), tracked with MLflow."""


@cli.group(cls=_Group)
def data() -> None:
    """Read, download, prepare and inspect ECG datasets."""


@data.command("inspect")
@click.argument("dataset")
@click.option("--label-set", default="shared18", show_default=True, help="Label set to count classes of.")
@click.option("--fs", default=100.0, show_default=True, help="PTB-XL: 100 reads records100/, more reads records500/.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any record cannot be read.")
def inspect_command(dataset: str, label_set: str, fs: float, strict: bool) -> None:
    """Show what DATASET (a folder or a spec such as cinc:PATH) holds."""
    from ecgtl.data.inspect import inspect_dataset

    inspection = inspect_dataset(dataset, label_set=label_set, fs=fs)
    click.echo(inspection.render())
    if strict and inspection.problems:
        raise EcgtlError(f"{len(inspection.problems)} records skipped; first: {inspection.problems[0].reason}")


@data.command("prepare")
@click.argument("spec")
@click.option("--fs", default=100.0, show_default=True, help="Target sampling frequency (Hz).")
@click.option("--length", "length_s", default=10.0, show_default=True, help="Seconds per record (crop/pad).")
@click.option("--label-set", default="shared18", show_default=True, help="Label set the cache encodes.")
@click.option("--no-equivalences", is_flag=True, help="Do not merge the challenge's equivalent SNOMED codes.")
@click.option("--split-seed", default=0, show_default=True, help="Seed of the stratified split (CinC data).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Default: $ECGTL_CACHE_DIR or ~/.cache/ecgtl.")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--strict", is_flag=True, help="Fail on the first record that cannot be read.")
def prepare_command(spec: str, fs: float, length_s: float, label_set: str, no_equivalences: bool,
                    split_seed: int, cache_dir: Path | None, workers: int | None, strict: bool) -> None:
    """Build (or reuse) the preprocessed cache for SPEC and say where it is."""
    import time

    from ecgtl.data.cache import prepare
    from ecgtl.data.prepare_config import PrepareConfig

    started = time.perf_counter()
    config = PrepareConfig(spec=spec, fs=fs, length_s=length_s, label_set=label_set,
                           equivalences=not no_equivalences, split_seed=split_seed)
    prepared = prepare(config, cache_dir=cache_dir, strict=strict, workers=workers)
    manifest = prepared.manifest
    counts = ", ".join(f"{name} {count}" for name, count in manifest["counts"].items())
    click.echo(f"cache     {prepared.path}")
    click.echo(f"records   {counts}; {len(manifest['problems'])} skipped")
    click.echo(f"shape     12 leads x {manifest['samples']} samples at {fs:g} Hz, {len(prepared.classes)} classes")
    click.echo(f"cost      built in {manifest['seconds']:.2f} s; this call took {time.perf_counter() - started:.2f} s")


@data.command("download")
@click.argument("name", type=click.Choice(["ptbxl", "g12ec"]))
@click.option("--to", "folder", type=click.Path(path_type=Path), required=True, help="Destination folder.")
@click.option("--mirror", default=None, help="Base URL of a PhysioNet mirror (default https://physionet.org/files/).")
def download_command(name: str, folder: Path, mirror: str | None) -> None:
    """Download NAME from PhysioNet, verified against SHA256SUMS.txt; rerun to resume."""
    from ecgtl.data.download import download, render_report

    report = download(name, folder, mirror=mirror)
    click.echo(render_report(report))
    if report.failed:
        raise EcgtlError(f"{len(report.failed)} files failed verification; first: {report.failed[0]}")


@data.command("synth")
@click.option("--like", required=True, help="Layout to write: ptbxl (native PTB-XL) or g12ec (CinC 2021).")
@click.option("--n", type=int, required=True, help="Number of records.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the records (same seed, same bytes).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A new (or empty) folder.")
@click.option("--rates", default="100", show_default=True, help="PTB-XL: 100, 500 or 100,500.")
@click.option("--noiseless", is_flag=True, help="No baseline wander, EMG, hum or gain differences.")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
def synth_command(like: str, n: int, seed: int, out: Path, rates: str, noiseless: bool, workers: int | None) -> None:
    """Write a synthetic dataset in a real PhysioNet layout (same seed, same bytes)."""
    import time

    from ecgtl.data.synthetic import SynthConfig, generate

    try:
        rate_list = tuple(int(r) for r in rates.split(","))
    except ValueError:
        raise EcgtlError(f"--rates must be integers such as 100,500, got {rates!r}") from None
    started = time.perf_counter()
    folder = generate(SynthConfig(like=like, n=n, seed=seed, rates=rate_list, noise=not noiseless), out,
                      workers=workers)
    click.echo(f"wrote {n} {like} records to {folder} in {time.perf_counter() - started:.1f} s")


@data.command("plot")
@click.argument("source")
@click.option("--record", "record_id", default=None, help="Record id (not needed for a .hea file).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="x.html (self-contained) or x.png.")
@click.option("--gallery", is_flag=True, help="One example per class of the label set instead of one record.")
@click.option("--label-set", default="shared18", show_default=True, help="Label set whose classes the gallery shows.")
@click.option("--fs", default=500.0, show_default=True, help="PTB-XL: 100 reads records100/, more reads records500/.")
def plot_command(source: str, record_id: str | None, out: Path, gallery: bool, label_set: str, fs: float) -> None:
    """Draw a 12-lead ECG of SOURCE (a .hea file, folder or spec) on ECG paper, or a gallery of classes."""
    from ecgtl.data.plot import plot_source

    click.echo(f"wrote {plot_source(source, out, record_id=record_id, gallery=gallery, label_set=label_set, fs=fs)}")


def _spellings(name: str) -> list[str]:
    """`--n_trials` (the MLflow param's spelling) and `--n-trials` (click's convention): both are accepted."""
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]))


def _config_options(config_class):
    """One `--a.b` option per flattened config field (the same names as the MLflow params), accepted with
    dashes too (`--train.batch-size`): its type, its choices (`click.Choice`, from the field's declaration) and
    its help (the config's `HELP`) come from the config class."""
    from ecgtl.config import choices, field_help, field_types, flatten, value_type

    defaults = flatten(config_class())
    help_texts = field_help(config_class)

    def decorate(function):
        for name, kind in reversed(list(field_types(config_class).items())):
            values = choices(kind)
            click_type = click.Choice(values) if values is not None else {
                bool: click.BOOL, int: click.INT, float: click.FLOAT}.get(value_type(kind), click.STRING)
            # A bool works as a flag (`--quick`) and with a value (`--quick false`, as MLproject passes it).
            extra = {"is_flag": False, "flag_value": "true"} if kind is bool else {}
            function = click.option(*_spellings(name), name.replace(".", "__"), type=click_type, default=None,
                                    help=" ".join(filter(None, [help_texts.get(name), f"default: {defaults[name]!r}"])),
                                    **extra)(function)
        return function

    return decorate


def _config_from(config_class, options: dict):
    from ecgtl.config import build

    return build(config_class, {k.replace("__", "."): v for k, v in options.items() if v is not None})


def _stage_command(name: str, config_class, run, help_text: str, *, resumable: bool = False,
                   extra_options: tuple = ()) -> None:
    """A command whose options are `config_class`'s fields (plus `extra_options`, passed to `run` by name);
    `run(config, **extra)` does the work and returns the line to print."""
    def command(**options):
        extra = {option.name: options.pop(option.name) for option in extra_options}
        if resumable:
            extra["resume"] = options.pop("resume", None)
        said = run(_config_from(config_class, options), **extra)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the job
            click.echo(said)

    command.__doc__ = help_text
    if resumable:
        command = click.option("--resume", default=None, metavar="RUN_ID",
                               help="Continue a killed run from its last checkpoint (same parameters).")(command)
    for option in extra_options:
        command.__click_params__ = [*getattr(command, "__click_params__", []), option]
    cli.command(name, help=help_text)(_config_options(config_class)(command))


def _worker_command(name: str, what: str, join) -> None:
    """`NAME --storage URL --study-name NAME`: join a running queue from another machine."""
    @cli.command(name, help=f"Join a running {what} (shared storage) from another machine.")
    @click.option("--storage", required=True, help="The Optuna storage URL it uses.")
    @click.option("--study-name", "--study_name", required=True, help="The study (queue) name it uses.")
    def command(storage: str, study_name: str) -> None:
        click.echo(join(storage, study_name))


def _register_stage_commands() -> None:
    """Options come from the config classes (light imports); each stage is imported when its command runs."""
    from ecgtl.stages.configs import (
        AXES,
        PRESET_NAMES,
        AblationConfig,
        EvaluateConfig,
        FinetuneConfig,
        MainConfig,
        PretrainConfig,
        PromoteConfig,
        TuneConfig,
    )

    def described(result) -> str:
        return f"run {result.run_id}" + (f"  model {result.model_uri}" if getattr(result, "model_uri", None) else "")

    def pretrain(config, resume):
        from ecgtl.stages.pretrain import pretrain as run

        return described(run(config, resume_run_id=resume))

    def finetune(config, resume):
        from ecgtl.stages.finetune import finetune as run

        return described(run(config, resume_run_id=resume))

    def scratch(config, resume):
        from ecgtl.stages.finetune import finetune as run
        from ecgtl.stages.finetune import scratch_config

        return described(run(scratch_config(config), resume_run_id=resume))

    def evaluate(config):
        from ecgtl.stages.evaluate import evaluate as run

        return described(run(config))

    def main_stage(config):
        from ecgtl.stages.main import main as run

        return described(run(config)["fine-tuned"])

    def ablation(config, axis_values):
        from dataclasses import replace

        from ecgtl.stages.ablation import ablation as run

        if axis_values:
            config = replace(config, axes=";".join(filter(None, [config.axes, *axis_values])))
        results = run(config)
        finished = int((results["cells"]["status"] == "finished").sum())
        return f"{finished} of {len(results['cells'])} cells finished"

    def ablation_worker(storage, study_name):
        from ecgtl.stages.ablation import ablation_worker as join

        return f"ran {join(storage, study_name)} tasks"

    def tune(config):
        from ecgtl.stages.tune import tune as run

        summary = run(config)
        final = summary.get("final")
        return (f"trials {summary['counts']}; best val macro AUC {summary.get('best_value', float('nan')):.4f}"
                + (f"; challenger {final.model_uri} (test macro AUC {final.metrics['test_macro_auc']:.4f})"
                   if final else ""))

    def tune_worker(storage, study_name):
        from ecgtl.stages.tune import tune_worker as join

        return f"ran {join(storage, study_name)} trials"

    def promote(config):
        from ecgtl.stages.promote import promote as run

        return run(config).describe() + (" (dry run: nothing changed)" if config.dry_run else "")

    _stage_command("pretrain", PretrainConfig, pretrain, "Pretrain on the source dataset and register "
                   "ecgtl-pretrained.", resumable=True)
    _stage_command("finetune", FinetuneConfig, finetune, "Fine-tune a pretrained model on the target dataset and "
                   "register ecgtl-finetuned.", resumable=True)
    _stage_command("scratch", FinetuneConfig, scratch, "Train the same model from scratch on the target (the "
                   "baseline); registers ecgtl-scratch.", resumable=True)
    _stage_command("evaluate", EvaluateConfig, evaluate, "Evaluate any model URI on any dataset spec.")
    _stage_command("main", MainConfig, main_stage,
                   "pretrain -> finetune -> scratch -> comparison table, reusing finished steps.")
    axis_option = click.Option(["--axis", "axis_values"], multiple=True, metavar="NAME=V1,V2",
                               help="An axis and its values; repeat for several (leads: separate selections with |).")
    _stage_command("ablation", AblationConfig, ablation, f"Run (or resume) an ablation grid: presets "
                   f"{', '.join(PRESET_NAMES)}; axes {', '.join(AXES)}. Finished cells are skipped on a re-run.",
                   extra_options=(axis_option,))
    _worker_command("ablation-worker", "ablation's queue", ablation_worker)
    _stage_command("tune", TuneConfig, tune, "Tune unfreezing schedule and learning rates with Optuna (validation "
                   "macro AUC); the best configuration is trained again and registered as a challenger of "
                   "ecgtl-finetuned.")
    _worker_command("tune-worker", "study", tune_worker)
    _stage_command("promote", PromoteConfig, promote, "Move `champion` to the challenger if it beats the champion "
                   "on the same test records (margin on the gain's lower CI bound, ECE tolerance).")


def _rate_policies() -> tuple[str, ...]:
    from ecgtl.config import choices
    from ecgtl.stages.configs import RatePolicy

    return choices(RatePolicy)


@cli.command("predict")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--model", "model_uri", default="models:/ecgtl-finetuned@champion", show_default=True,
              help="Any MLflow model URI of an ecgtl model.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--rate-policy", "--rate_policy", "rate_policy", default="resample", show_default=True,
              type=click.Choice(_rate_policies()),
              help="Records at another rate: resample them to the model's, or read them natively (S4D).")
def predict_command(path: Path, model_uri: str, as_json: bool, rate_policy: str) -> None:
    """Probabilities and labels for the record(s) at PATH (a .hea file or a folder), at any sampling rate."""
    from ecgtl.predict import predict

    predictions = predict(path, model_uri, rate_policy)
    click.echo(predictions.to_json() if as_json else predictions.render())


@cli.command("dashboard")
@click.option("--experiment", default=None, help="Default: $MLFLOW_EXPERIMENT_NAME, else ecgtl.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the site's pages.")
@click.option("--no-log", is_flag=True, help="Do not log the site as artifacts of a dashboard run.")
def dashboard_command(experiment: str | None, out: Path, no_log: bool) -> None:
    """A static offline site of an experiment's runs (overview, classes, transfer, calibration, tuning, registry)."""
    from ecgtl.dashboard import dashboard
    from ecgtl.tracking import experiment_name

    pages = dashboard(out, experiment or experiment_name(), log=not no_log)
    click.echo(f"wrote {len(pages)} pages to {out}: open {out / 'index.html'}")


@cli.command("explain")
@click.argument("record", type=click.Path(path_type=Path))
@click.option("--model", "model_uri", default="models:/ecgtl-finetuned@champion", show_default=True,
              help="Any MLflow model URI of an ecgtl model.")
@click.option("--class", "class_names", multiple=True, help="A class to explain (repeat); default: the top 3.")
@click.option("--steps", default=None, type=click.IntRange(2, 1024),
              help="Integrated-gradient steps (more: a smaller completeness gap; default: explain.DEFAULT_STEPS).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the page and the JSON.")
def explain_command(record: Path, model_uri: str, class_names: tuple[str, ...], steps: int | None, out: Path) -> None:
    """Which leads and which parts of the beats drive the model's prediction for RECORD (a .hea file): integrated
    gradients over the model's pipeline, drawn on the 12-lead page, with per-lead importance."""
    from ecgtl.explain import DEFAULT_STEPS, explain_file

    written = explain_file(record, model_uri, out, class_names=class_names, steps=steps or DEFAULT_STEPS)
    click.echo(f"wrote {', '.join(str(p) for p in written)}")


@cli.command("export")
@click.argument("uri")
@click.option("--format", "fmt", default="onnx", show_default=True, help="Only onnx for now.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the exported files.")
def export_command(uri: str, fmt: str, out: Path) -> None:
    """Export the model at URI (window model as ONNX, its pipeline as JSON, a numpy/onnxruntime runner)."""
    from ecgtl.export import export

    written = export(uri, out, fmt)
    click.echo(f"wrote {', '.join(p.name for p in written)} to {out}; run: python {out / 'run_onnx.py'} {out} "
               "SIGNALS.npy")


@cli.group(cls=_Group)
def models() -> None:
    """Model architectures, and registered models when a store is set (MLFLOW_TRACKING_URI)."""


@models.command("list")
def models_list() -> None:
    """Names, parameter counts and layer groups of every architecture; then registered models and aliases."""
    import os

    from ecgtl.models import architectures, count_parameters, create_model

    for name in architectures():
        model = create_model(name, n_classes=18)
        groups = ", ".join(f"{g} ({count_parameters(m):,})" for g, m in model.layer_groups())
        click.echo(f"{name:<14} {count_parameters(model):>10,} parameters  groups: {groups}")
    if os.environ.get("MLFLOW_TRACKING_URI"):
        from ecgtl import tracking

        tracking.configure()
        for registered in tracking.registered_models():  # names and aliases come from the store: shown escaped
            versions = ", ".join(f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v["aliases"] else "")
                                 for v in registered["versions"])
            click.echo(printable(f"registered {registered['name']}: {versions}", lines=False))


@models.command("show")
@click.argument("uri")
def models_show(uri: str) -> None:
    """Print the model card of a registered version (models:/NAME@ALIAS or models:/NAME/VERSION)."""
    from ecgtl import tracking

    tracking.configure()
    card = tracking.version_description(uri)  # the store's text: shown escaped
    click.echo(printable(card) if card else f"{printable(uri, lines=False)} has no model card (registered by an older ecgtl)")


_register_stage_commands()


def main(args: list[str] | None = None) -> None:
    """The program `ecgtl` (and every MLproject entry point). At exit the interpreter's last garbage collection
    walks every object torch, MLflow and pandas made, 2-3 s after a training run: the objects are frozen first
    (an atexit handler, so in-process callers are untouched until their own exit) and left to the OS, which
    reclaims the process's memory anyway. Files are closed by then and the other atexit handlers (the PNG
    renderer, MLflow) still run."""
    atexit.register(gc.freeze)
    cli(args=args, prog_name="ecgtl")


if __name__ == "__main__":
    sys.exit(main())
