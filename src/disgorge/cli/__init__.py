"""The ``disgorge`` command line: a thin layer over :class:`disgorge.Workspace`.

Exit codes: 0 success; 1 an error (message on stderr) or a failed check; 2 a usage
error; 3 an ingest that finished but refused some files.
"""

from __future__ import annotations

import typer

from .._version import __version__
from ._common import fail
from .access_cmds import settings_app, token_app, user_app
from .audit_cmds import audit_app
from .catalog_cmds import asset_app, source_app, subject_app
from .datasets_cmds import dataset_app
from .demo_cmd import demo
from .erasure_cmds import certificate_app, erase, erasure_app, verify
from .hold_cmds import hold_app
from .ingest_cmds import analyze, consent_app, find, ingest
from .lineage_cmds import lineage, run_app
from .models_cmds import model_app, predict, train
from .request_cmds import request_app
from .restore_cmd import restore_check
from .retention_cmds import retention_app
from .server_cmds import serve
from .sharing_cmds import recipient_app, sender_app, share, transfer_app
from .workspace_cmds import gc, init, keygen, migrate, status

__all__ = ["app", "main"]

app = typer.Typer(
    name="disgorge",
    help="Know what every photo fed, and take it back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"disgorge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Know what every photo fed, and take it back."""


app.command()(init)
app.command()(status)
app.command()(ingest)
app.command()(gc)
app.command()(migrate)
app.command()(keygen)
app.command()(demo)
app.command()(lineage)
app.command()(analyze)
app.command()(find)
app.command()(train)
app.command()(predict)
app.command()(erase)
app.command()(verify)
app.command()(share)
app.command()(serve)
app.command("restore-check")(restore_check)
app.add_typer(source_app, name="source")
app.add_typer(consent_app, name="consent")
app.add_typer(subject_app, name="subject")
app.add_typer(asset_app, name="asset")
app.add_typer(audit_app, name="audit")
app.add_typer(dataset_app, name="dataset")
app.add_typer(run_app, name="run")
app.add_typer(model_app, name="model")
app.add_typer(erasure_app, name="erasure")
app.add_typer(request_app, name="request")
app.add_typer(hold_app, name="hold")
app.add_typer(retention_app, name="retention")
app.add_typer(certificate_app, name="certificate")
app.add_typer(recipient_app, name="recipient")
app.add_typer(sender_app, name="sender")
app.add_typer(transfer_app, name="transfer")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(settings_app, name="settings")


def main() -> None:
    app()


__all__ += ["fail"]
