"""user, token, settings: who may call the API (``disgorge serve``) and with what role."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from ..access.roles import ROLES
from ._common import JsonOpt, WorkspaceOpt, console, err, fail, open_workspace, print_json, shown

__all__ = ["settings_app", "token_app", "user_app"]

user_app = typer.Typer(help="Principals: the people and systems that call the API.", no_args_is_help=True)
token_app = typer.Typer(
    help="Bearer tokens of principals (shown once, stored as a hash).", no_args_is_help=True
)
settings_app = typer.Typer(
    help="The workspace's settings (the two-person rule, sticky erasure of near-copies).",
    no_args_is_help=True,
)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The principal's name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
    service: Annotated[bool, typer.Option("--service", help="A service principal (another system).")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a user (or, with --service, a service principal) with a role."""
    with open_workspace(workspace) as ws:
        view = ws.add_principal(name, role=role, kind="service" if service else "user")
    if json_out:
        print_json(view)
        return
    console.print(
        f"added {shown(view['name'])} ({view['role']}, {view['kind']}) as {view['id']}", markup=False
    )


@user_app.command("list")
def user_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every principal, with its role and number of active tokens."""
    with open_workspace(workspace) as ws:
        rows = ws.principals()
    if json_out:
        print_json(rows)
        return
    table = Table("name", "role", "kind", "tokens", "disabled", "id")
    for row in rows:
        table.add_row(
            shown(row["name"]),
            row["role"],
            row["kind"],
            str(row["tokens"]),
            row["disabled_at"] or "",
            row["id"],
        )
    console.print(table)


@user_app.command("disable")
def user_disable(
    name: Annotated[str, typer.Argument(help="The principal's name.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Disable a principal: its tokens stop working at once."""
    with open_workspace(workspace) as ws:
        view = ws.disable_principal(name)
    if json_out:
        print_json(view)
        return
    console.print(f"disabled {shown(view['name'])}", markup=False)


@user_app.command("password")
def user_password(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin (no prompt)."),
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a user's web UI password (argon2id; at least 12 characters); ends their UI sessions."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with open_workspace(workspace) as ws:
        view = ws.set_password(name, password)
    if json_out:
        print_json(view)
        return
    console.print(
        f"password set for {shown(view['name'])}; {view['sessions_ended']} web session(s) ended",
        markup=False,
    )


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="The principal the token stands for.")],
    expires: Annotated[str, typer.Option(help="Lifetime: 90d, 12h, 2w, or never.")] = "90d",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a bearer token; it is printed this once (only its hash is kept)."""
    with open_workspace(workspace) as ws:
        view = ws.create_token(user, expires=expires)
    if json_out:
        print_json(view)
        return
    err.print(
        f"token {view['id']} for {shown(view['principal'])}, expires {view['expires_at'] or 'never'}; "
        "it is shown only now:",
        markup=False,
    )
    print(view["token"])


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this principal's tokens.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Tokens by prefix (never the secret), with state and last use."""
    with open_workspace(workspace) as ws:
        rows = ws.tokens(user)
    if json_out:
        print_json(rows)
        return
    table = Table("prefix", "principal", "state", "created", "expires", "last used")
    for row in rows:
        table.add_row(
            row["prefix"],
            shown(row["principal"]),
            row["state"],
            row["created_at"],
            row["expires_at"] or "never",
            row["last_used_at"] or "",
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id or prefix (dg_<id>).")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a token: it stops working at once."""
    with open_workspace(workspace) as ws:
        view = ws.revoke_token(token_id)
    if json_out:
        print_json(view)
        return
    console.print(f"revoked {view['prefix']} of {shown(view['principal'])}", markup=False)


@settings_app.command("show")
def settings_show(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The workspace's settings."""
    with open_workspace(workspace) as ws:
        values = ws.settings()
    if json_out:
        print_json(values)
        return
    for key, value in values.items():
        console.print(f"{key} = {value}", markup=False)


@settings_app.command("set")
def settings_set(
    key: Annotated[
        str,
        typer.Argument(
            help="approvals_required, approval_subject_threshold, sticky_copies or sticky_copy_distance."
        ),
    ],
    value: Annotated[int, typer.Argument(help="A whole number.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a setting (audited)."""
    if not key:
        raise fail("a setting's name is needed")
    with open_workspace(workspace) as ws:
        values = ws.set_setting(key, value)
    if json_out:
        print_json(values)
        return
    console.print(f"{key} = {dict(values).get(key)}", markup=False)
