"""The ``edgeres`` entry point: joins the command modules and turns EdgeresError into exit code 1."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from edgeres.cli import bench, build, calibrate, data, demo, export, import_model, info, predict, workspace
from edgeres.cli import camera as camera_cmd
from edgeres.cli import deploy as deploy_cmd
from edgeres.cli import doctor as doctor_cmd
from edgeres.cli import eval as eval_cmd
from edgeres.cli import qat as qat_cmd
from edgeres.cli import report as report_cmd
from edgeres.cli import selftest as selftest_cmd
from edgeres.cli import train as train_cmd
from edgeres.errors import EdgeresError

app = typer.Typer(
    name="edgeres",
    help="Take a ResNet from training to an edge device with INT8 accuracy intact, measured honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default: ...]" literally; rich would read it as markup
)
app.command("demo")(demo.demo)
app.command("info")(info.info)
app.add_typer(data.app, name="data")
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.evaluate)
app.command("init")(workspace.init)
app.command("export")(export.export)
app.command("import")(import_model.import_model)
app.command("calibrate")(calibrate.calibrate)
app.command("qat")(qat_cmd.qat)
app.command("build")(build.build)
app.command("predict")(predict.predict)
app.command("bench")(bench.bench)
app.command("report")(report_cmd.report)
app.command("camera")(camera_cmd.camera)
app.add_typer(deploy_cmd.app, name="deploy")
app.command("doctor")(doctor_cmd.doctor)
app.command("selftest")(selftest_cmd.selftest)

err_console = Console(stderr=True)


def main() -> None:
    """Run the CLI; a user mistake is one red line on stderr and exit code 1, never a traceback."""
    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as the return value here
    except EdgeresError as exc:
        # escape: messages carry text like "pip install 'edgeres[tensorrt]'" that rich would read as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's own usage errors arrive here in standalone_mode=False
        if isinstance(exc, _click_exception()):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Abort):
            sys.exit(1)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


def _click_exception() -> type:
    """click's usage-error base class: newer typer vendors click as ``typer._click``, older typer imports click."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException


if __name__ == "__main__":
    main()
