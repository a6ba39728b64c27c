"""The ``stalegrad`` command: a thin root that registers one module per command.

Usage errors exit 2 with one ``Error:`` line; runtime failures exit 1. Heavy libraries are imported inside the
commands, so ``stalegrad --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from .. import __version__

#: Command name -> the module (in this package) and attribute that define it, in the order ``--help`` lists them.
#: A command's module is imported only when the command runs (or ``--help`` lists the commands): every command
#: pays for its own options only.
COMMANDS = {
    "predict": ("predict", "predict_command"),
    "simulate": ("simulate", "simulate_command"),
    "compare": ("compare", "compare_command"),
    "reproduce": ("reproduce", "reproduce_command"),
    "train": ("train", "train_command"),
    "run": ("run", "run_command"),
    "fit": ("fit", "fit_command"),
    "advise": ("advise", "advise_command"),
    "sweep": ("sweep", "sweep_command"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        import importlib

        module, attr = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="stalegrad")
def cli() -> None:
    """Gradient staleness in asynchronous distributed SGD (one master, n workers, an update every K gradients).

    Predict it in closed form, simulate it exactly, reproduce the reference paper (Al-Lawati & Draper), and run
    it for real on Ray.
    """


#: Options renamed to the shared vocabulary (``docs/vocabulary.md``): a user's old spelling is told the new one.
RENAMED = {"--lr": "--step", "--batch": "--b"}


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every expected failure into one line and an exit status."""
    import warnings

    from ..errors import SpecError, StalegradError

    # numerical warnings of numpy and scipy are not the user's business: results carry their own caveats
    warnings.simplefilter("ignore", RuntimeWarning)
    try:
        code = cli.main(args=argv, prog_name="stalegrad", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:  # click's form of Ctrl-C; a run's says where its checkpoint is
        click.echo(f"Error: {str(exc.__cause__ or '') or 'interrupted'}", err=True)
        code = 130
    except click.UsageError as exc:
        message = exc.format_message()
        if isinstance(exc, click.NoSuchOption) and exc.option_name in RENAMED:
            message = f"No such option '{exc.option_name}': it is now {RENAMED[exc.option_name]}"
        click.echo(f"Error: {message}", err=True)
        code = 2
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except SpecError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = 2
    except StalegradError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = 1
    except KeyboardInterrupt as exc:  # a run says where its checkpoint is
        click.echo(f"Error: {str(exc) or 'interrupted'}", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
