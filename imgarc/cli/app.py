"""The `imgarc` command: one typer app, one module per command (parse, call the library, print).

`main()` is the one place that turns errors into one line and an exit code: ImgarcError -> its
message and exit_code; Ctrl-C/SIGTERM -> 130; usage mistakes -> typer's message, 2; anything
else is a bug -> "internal error", 70. `run()`, the console script, is main() in a process of
its own: it ends without the interpreter's teardown.
"""

from __future__ import annotations

import atexit
import os
import sys
import warnings
from typing import NoReturn

import typer
from rich.markup import escape

from imgarc.cli.bench import bench
from imgarc.cli.classify import classify
from imgarc.cli.compress import compress
from imgarc.cli.console import console
from imgarc.cli.extract import extract
from imgarc.cli.latents import latents
from imgarc.cli.learn import learn
from imgarc.cli.listing import list_
from imgarc.cli.models import models
from imgarc.cli.optimize import optimize
from imgarc.cli.show import show
from imgarc.cli.train import train
from imgarc.cli.verify import verify
from imgarc.errors import ImgarcError, OutOfSpaceError
from imgarc.fileio import NO_SPACE, remove_live_temp_files
from imgarc.blas_threads import one_blas_thread
from imgarc.process_memory import return_large_blocks_to_system

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=(
        "Archive folders of photos with a learned image codec.\n\n"
        "Photos (JPEG, PNG, HEIC, WebP, AVIF, TIFF) are coded lossily at the chosen --quality (a few times "
        "smaller than the originals) and come back under their own names and formats with their EXIF, ICC "
        "and XMP; every other file, and any photo the codec must not touch, is stored byte-exact "
        "(--keep-originals: every file). Paths, modification times and permissions are kept."
    ),
)
app.command()(compress)
app.command()(extract)
app.command("list")(list_)
app.command()(verify)
app.command()(train)
app.command()(optimize)
app.command()(models)
app.command()(bench)
app.command()(show)
app.command()(latents)
app.command()(learn)
app.command()(classify)


def exit_interrupted() -> NoReturn:
    """Exit 130 after Ctrl-C or SIGTERM. The interrupt's unwinding removed the temp files, and
    any it could not see (it landed between creating one and remembering it) are removed here.
    os._exit skips interpreter teardown: decode threads may still be inside a network (they
    write no files), and tearing down under them aborts the process (SIGABRT) instead."""
    remove_live_temp_files()
    console(stderr=True).print("[red]imgarc: interrupted[/] (no partial file was left under a final name)")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def exit_internal_error(e: Exception) -> NoReturn:
    """A bug: one line that says so, exit 70."""
    console(stderr=True).print(f"[red]imgarc: internal error:[/] {type(e).__name__}: {escape(str(e))} (please report this)")
    sys.exit(70)


def main() -> None:
    """Console-script entry: one clean line and a non-zero exit for every error."""
    # CompressAI still uses torch.jit.script, which torch now flags on every import: not the user's concern.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    return_large_blocks_to_system()
    one_blas_thread()
    try:
        code = app(standalone_mode=False)
    except ImgarcError as e:
        console(stderr=True).print(f"[red]imgarc: error:[/] {escape(str(e))}")
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        exit_interrupted()
    except typer.TyperException as e:  # usage mistakes: typer prints its own short usage message
        e.show()
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except BrokenPipeError:  # the output's reader went away (`imgarc list | head`): nothing more to say
        sys.stdout = open(os.devnull, "w")  # so that the flush at exit does not raise again
        sys.exit(1)
    except OSError as e:
        if e.errno not in NO_SPACE:
            exit_internal_error(e)
        console(stderr=True).print(f"[red]imgarc: error:[/] the disk is full: {escape(str(e))}")
        sys.exit(OutOfSpaceError.exit_code)
    except Exception as e:  # noqa: BLE001 - the one place a bug is turned into a line, not a traceback
        exit_internal_error(e)
    # Outside standalone mode typer turns Ctrl-C into Exit(130) and returns that code instead of raising.
    if code == 130:
        exit_interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def run() -> NoReturn:
    """The `imgarc` console script: main(), then the end of the process without the interpreter's
    teardown, which only frees what the process is about to give back anyway (modules, sessions,
    arrays, idle pool threads): 0.1 s of every command, a tenth of extracting one photo (measured
    with farm-bench). Exit handlers still run (a local Ray cluster's shutdown), and the output is
    flushed first: an output that cannot be written is an error, not a silent exit 0."""
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away (`imgarc list | head`): nothing more to say
            pass
        except OSError as e:
            code = code or 1
            os.write(2, f"imgarc: error: cannot write the output: {e.strerror or e}\n".encode())
    os._exit(code)
