"""Loading the models and serving the app: `main()` parses the flags, checks that the models fit, loads them once,
and serves until interrupted (Ctrl+C or SIGTERM), then removes every file the app wrote."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import gradio as gr
import torch
from starlette.middleware import Middleware

import aqa
from aqa.app.admission import RequestGuard
from aqa.app.flags import build_parser, model_specs, settings_from
from aqa.app.layout import CSS, KEYS
from aqa.app.page import build_demo
from aqa.app.settings import ASSETS, AppSettings
from aqa.cli.args import quiet_libraries
from aqa.errors import AQAError, ModelError
from aqa.loading import load
from aqa.model import available_memory, default_device, default_precision, read_config, weight_bytes


def check_models_fit(
    specs: Sequence[aqa.ModelSpec], free: Callable[[torch.device], int | None] = available_memory
) -> None:
    """Before anything loads (minutes for a 7B model): the models' weights must fit on their devices together, else
    one line with the numbers and what would fit. Two 7B models take ~31 GiB in bf16, ~13 GiB in 4-bit."""
    on_device: dict[torch.device, list[tuple[object, str]]] = {}
    for spec in specs:
        device = torch.device(spec.device) if spec.device else default_device()
        if device.type == "cuda" and device.index is None and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0" are one GPU
        precision = spec.precision or default_precision(device)
        on_device.setdefault(device, []).append((read_config(spec.name, precision), precision))
    for device, models in on_device.items():
        sizes = [weight_bytes(config, precision) for config, precision in models]
        available = free(device)
        if available is None or sum(sizes) <= available:
            continue
        where = "GPU memory" if device.type == "cuda" else "RAM"
        in_4bit = sum(weight_bytes(config, "4bit") for config, _ in models)
        if all(precision == "4bit" for _, precision in models) or in_4bit > available:
            hint = "put them on two GPUs (--compare-device cuda:1), or use a device with more memory"
        else:
            hint = f"try --precision 4bit --compare-precision 4bit (about {in_4bit / 2**30:.1f} GiB)"
        raise ModelError(
            f"the models do not fit in {where} together: about {sum(sizes) / 2**30:.1f} GiB of weights "
            f"({' + '.join(f'{size / 2**30:.1f}' for size in sizes)}), {available / 2**30:.1f} GiB available; {hint}"
        )


def launch(demo: gr.Blocks, settings: AppSettings, **kwargs):
    """Serve the demo; kwargs go to `Blocks.launch` (server_name, server_port, share, prevent_thread_lock...).

    Every request passes the request guard (body caps, the disk quota for uploads). While the app serves, its
    files past their life are removed on a schedule (`Cache.tidy`); when it stops, the pages' history files go."""
    cache = demo.cache

    @asynccontextmanager
    async def housekeeping(_app):
        async def loop():
            while True:
                await asyncio.sleep(cache.schedule())
                await asyncio.to_thread(cache.tidy)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            cache.remove_history()

    guard = Middleware(RequestGuard, settings=settings, cache=cache)
    return demo.launch(
        max_file_size=settings.max_file_size,
        allowed_paths=[str(ASSETS)],
        css=CSS,
        js=KEYS,
        ssr_mode=False,  # the app's limits live in this Python server; a Node server in front would read bodies first
        app_kwargs={"lifespan": housekeeping, "middleware": [guard]},
        **kwargs,
    )


@contextmanager
def own_files() -> Iterator[Path]:
    """A fresh folder for this run's files inside Gradio's cache folder ($GRADIO_TEMP_DIR, else /tmp/gradio), made
    Gradio's own for this process; when the app stops it goes, with the empty folders Gradio made beside it (Gradio
    makes `vibe_edit_history/` in the cache folder it saw when imported) and the cache folder if this run made it."""
    base = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    made_base = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    before = set(base.iterdir())
    folder = Path(tempfile.mkdtemp(prefix="aqa-app-", dir=base))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for path in [*(set(base.iterdir()) - before), *([base] if made_base else [])]:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def stop_on_sigterm() -> None:
    """SIGTERM (how a Space or a service manager stops the app) ends it like Ctrl+C: Gradio closes the server and
    `main` removes the app's files."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries(debug=False)
    try:
        models = load_models(args)
    except AQAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    stop_on_sigterm()
    with own_files():
        demo = serve(models, settings, server_name=args.host, server_port=args.port, share=args.share)
        demo.block_thread()  # until Ctrl+C or SIGTERM
    return 0


@functools.cache
def demo_from_environment() -> gr.Blocks:
    """The app as `python app.py` with no flags builds it (its settings from the environment), once, not served."""
    args = build_parser().parse_args([])
    models = load_models(args)
    return build_demo(models[0], settings_from(args), compare=models[1] if len(models) > 1 else None)


def load_models(args) -> list[aqa.AQAModel]:
    """The models the flags name, loaded once at start-up (requests never load anything); with two, both are
    checked to fit before either loads."""
    specs = model_specs(args)
    if len(specs) > 1:
        check_models_fit(specs)
    return [load(spec) for spec in specs]


def serve(models: Sequence[aqa.AQAModel], settings: AppSettings, **kwargs) -> gr.Blocks:
    """Build the app around the models and serve it in the background; say where, and how to share it."""
    demo = build_demo(models[0], settings, compare=models[1] if len(models) > 1 else None)
    launch(demo, settings, quiet=True, prevent_thread_lock=True, **kwargs)
    print(f"* Running on local URL: {demo.local_url}", flush=True)
    if demo.share_url:
        print(f"* Public link: {demo.share_url}", flush=True)
    else:
        print("* For a public *.gradio.live link too, add --share (or set GRADIO_SHARE=1)", flush=True)
    return demo
