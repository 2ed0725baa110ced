"""``photocraft``: edit photos, generate pictures and look after jobs from the command line.

Exit codes: 0 all went well; 1 the gateway refused, or a job failed or was cancelled;
2 bad usage; 3 the platform cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from . import params as P
from .client import Client
from .config import DEFAULT_URL
from .display import Bars
from .errors import ApiError, PhotocraftError, Unreachable
from .outputs import photos_in, result_paths, slug, stems


class Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Settings:
    url: str
    api_key: str | None
    as_json: bool

    def client(self) -> Client:
        return Client(self.url, self.api_key)


def run(coroutine: Coroutine) -> Any:
    """Run ``coroutine``, turning the SDK's errors into messages and exit codes."""
    try:
        return asyncio.run(coroutine)
    except Unreachable as exc:
        raise Failure(str(exc), 3) from None
    except ApiError as exc:
        hint = f" (retry after {exc.retry_after:.0f} s)" if exc.retry_after else ""
        raise Failure(f"{exc.title} ({exc.status} {exc.type}): {exc.detail}{hint}") from None
    except PhotocraftError as exc:
        raise Failure(str(exc)) from None


def parameter_options(command):
    """``--param key=value`` (repeatable) and ``--params JSON``."""
    command = click.option("--params", "params_json", metavar="JSON",
                           help="the operation's parameters as a JSON object")(command)
    return click.option("--param", "pairs", multiple=True, metavar="KEY=VALUE",
                        help="one parameter (repeatable); dotted keys nest (output.format=jpeg); "
                             "values are JSON when they parse, strings otherwise")(command)


def build_params(*args: Any, **kwargs: Any) -> dict:
    try:
        return P.build(*args, **kwargs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="PHOTOCRAFT_URL", default=DEFAULT_URL, show_default=True,
              help="the gateway (env PHOTOCRAFT_URL)")
@click.option("--api-key", envvar="PHOTOCRAFT_API_KEY", help="an API key, pc_… (env PHOTOCRAFT_API_KEY); "
              "without one you are an anonymous device with 5 edits a day")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary on stdout")
@click.version_option(package_name="photocraft-sdk")
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None, as_json: bool) -> None:
    """Edit photos with a Photocraft platform. Progress goes to stderr, result paths to stdout."""
    ctx.obj = Settings(url, api_key, as_json)


async def track(client: Client, jobs: dict[str, tuple[dict, Path]]) -> list[dict]:
    """Follow every job with a progress bar and download its results to its base path.
    ``jobs``: {display name: (accepted job, base path of its results)}. Returns one summary per job."""
    with Bars(list(jobs)) as bars:

        async def one(name: str, accepted: dict, base: Path) -> dict:
            summary = {"photo": name, "job_id": accepted["job_id"], "status": "unknown", "outputs": []}

            def on_retry(error: PhotocraftError, delay_s: float) -> None:
                bars.note(f"[yellow]{escape(name)}: {escape(str(error))}; reconnecting in {delay_s:.1f} s")

            try:
                async for event in client.events(accepted, on_retry=on_retry):
                    bars.show(name, event)
                    summary["status"] = event["type"]
                    if event["type"] == "completed":
                        for result, path in result_paths(event["results"], base):
                            summary["outputs"].append(str(await client.download(result["url"], path)))
                    elif event["type"] in ("failed", "cancelled"):
                        summary["error"] = event.get("message") or event.get("reason") or ""
                        summary["code"] = event.get("code")
            except PhotocraftError as exc:
                summary.update(status="error", error=str(exc))
            return summary

        return list(await asyncio.gather(*(one(name, *job) for name, job in jobs.items())))


def report(settings: Settings, summaries: list[dict]) -> None:
    """Print the outcome (paths, or JSON); exit 1 when a job did not complete."""
    if settings.as_json:
        print(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2))
    else:
        for s in summaries:
            if s["status"] == "completed":
                print(f"{s['photo']} -> {', '.join(s['outputs'])}")
            else:
                click.echo(f"{s['photo']}: {s['status']} (job {s['job_id']}) {s.get('code') or ''} "
                           f"{s.get('error', '')}", err=True)
    bad = [s for s in summaries if s["status"] != "completed"]
    if bad:
        raise Failure(f"{len(bad)} of {len(summaries)} jobs did not complete")


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--op", "operation", required=True, metavar="OPERATION",
              help="remove-background, enhance, retouch, restore or colorize")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="the result file (one photo) or folder (a folder of photos)")
@click.option("--scale", type=click.IntRange(1, 4), help="enhance: 1, 2 or 4; restore: upscale 1 or 2")
@click.option("--background", help="remove-background: transparent, blur[:RADIUS] or #rrggbb")
@click.option("--subject", type=click.Choice(["object", "person"]), help="remove-background's model")
@click.option("--format", "fmt", type=click.Choice(["png", "jpeg", "webp"]), help="output format")
@click.option("--quality", type=click.IntRange(1, 100), help="JPEG/WebP quality")
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(1, 50),
              help="photos per batch (a folder); lower tiers hold fewer")
@click.option("--separate", is_flag=True, help="a folder as one job per photo instead of batches")
@parameter_options
@click.pass_obj
def edit(settings: Settings, path: Path, operation: str, output: Path | None, scale: int | None,
         background: str | None, subject: str | None, fmt: str | None, quality: int | None, batch_size: int,
         separate: bool, pairs: tuple[str, ...], params_json: str | None) -> None:
    """Edit PATH, a photo or a folder of photos, with --op OPERATION.

    \b
    photocraft edit me.jpg --op remove-background -o cutout.png
    photocraft edit holiday/ --op enhance --scale 2 -o holiday-x2/
    photocraft edit me.jpg --op remove-background --background blur:30 --format jpeg
    """
    try:
        options = {"upscale" if operation == "restore" else "scale": scale, "subject": subject,
                   "background": P.background(background) if background else None,
                   "output.format": fmt, "output.quality": quality}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--background") from None
    folder = path.is_dir()
    params = build_params(params_json, pairs, options, None if folder else output)

    async def main() -> list[dict]:
        async with settings.client() as client:
            if not folder:
                base = output or Path(f"{path.stem}-{operation}")
                base = base / f"{path.stem}-{operation}" if base.is_dir() else base
                return await track(client, {path.name: (await client.submit_job(operation, path, params), base)})
            photos = photos_in(path)
            if not photos:
                raise Failure(f"no photos in {path}", 2)
            outdir, names = output or Path(f"{path.resolve().name}-{operation}"), stems(photos, operation)
            accepted = []
            if separate:
                accepted = [await client.submit_job(operation, photo, params) for photo in photos]
            for start in range(0, 0 if separate else len(photos), batch_size):
                accepted += (await client.submit_batch(operation, photos[start:start + batch_size], params))["jobs"]
            return await track(client, {p.name: (job, outdir / names[p]) for p, job in zip(photos, accepted,
                                                                                           strict=True)})

    report(settings, run(main()))


@cli.command()
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="the picture (default: from the prompt)")
@click.option("--seed", type=int)
@click.option("--steps", type=click.IntRange(1, 50), help="denoising steps (SD-Turbo: 1-4)")
@click.option("--width", type=int, help="multiple of 8, 64-2048 (512)")
@click.option("--height", type=int, help="multiple of 8, 64-2048 (512)")
@click.option("--negative-prompt")
@click.option("--guidance-scale", type=click.FloatRange(0, 20))
@parameter_options
@click.pass_obj
def generate(settings: Settings, prompt: str, output: Path | None, pairs: tuple[str, ...],
             params_json: str | None, **options: Any) -> None:
    """A picture from PROMPT (text-to-image).

    \b
    photocraft generate "a lighthouse on a cliff at dusk" -o lighthouse.png --steps 2 --seed 7
    """
    params = build_params(params_json, pairs, {"prompt": prompt, **options}, output)

    async def main() -> list[dict]:
        async with settings.client() as client:
            accepted = await client.submit_job("text-to-image", None, params)
            return await track(client, {"text-to-image": (accepted, output or Path(slug(prompt)))})

    report(settings, run(main()))


def show(settings: Settings, view: dict, batch: bool) -> None:
    if settings.as_json:
        print(json.dumps(view, indent=2))
    elif batch:
        print(f"batch {view['batch_id']} {view['operation']}: {view['done']} of {view['total']} completed, "
              f"{view['failed']} failed or cancelled")
        for job_id, status in view["jobs"].items():
            print(f"  {job_id} {status}")
    else:
        print(f"job {view['job_id']} {view['operation']}: {view['status']} (lane {view['lane']})")
        for result in view.get("results") or []:
            print(f"  {result['role']} {result['width']}x{result['height']} {result['content_type']}: {result['url']}")
        if view.get("error"):
            print(f"  error {view['error'].get('code')}: {view['error'].get('message')}")
        for warning in view.get("warnings") or []:
            print(f"  warning: {warning}")


def lookup(method: str):
    """A command that calls ``Client.<method>_job`` (or ``_batch`` with --batch) and shows the view."""

    @click.argument("ident", metavar="ID")
    @click.option("--token", help="the job's (batch's) token; default: your API key or device token")
    @click.option("--batch", is_flag=True, help="ID is a batch")
    @click.pass_obj
    def command(settings: Settings, ident: str, token: str | None, batch: bool) -> None:
        async def main() -> dict:
            async with settings.client() as client:
                return await getattr(client, f"{method}_{'batch' if batch else 'job'}")(ident, token)

        show(settings, run(main()), batch)

    return command


cli.command("status", help="Show a job (or batch) ID: status, results, error.")(lookup("get"))
cli.command("cancel", help="Cancel a job (or every unfinished job of batch ID).")(lookup("cancel"))


def main() -> None:
    cli(prog_name="photocraft")
