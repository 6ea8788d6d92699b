"""Principals, tokens and settings (``admin``), and who am I (anyone with a token)."""

from typing import Annotated, Literal

from fastapi import Body
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ...access import principals, settings
from ...access.principals import PrincipalView, TokenCreated, TokenView
from ...access.settings import Settings
from ..deps import Ctx, Limit, Offset, Page, Who, page
from ..table import Resource

__all__ = ["resource"]

resource = Resource("principals", "Users, service principals, their tokens, and the workspace's settings.")


class Me(TypedDict):
    id: str
    name: str
    role: str
    kind: str
    scopes: list[str]


class NewPrincipal(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "auditor", "ml_engineer", "privacy_officer", "admin"]
    kind: Literal["user", "service"] = "user"


class NewToken(BaseModel):
    #: ``90d``, ``12h``, ``2w`` or ``never``
    expires: str = Field(default="90d", max_length=16)


class SettingChange(BaseModel):
    value: int


@resource.get("/v1/me", scope=None, summary="The calling principal, its role and scopes", response_model=Me)
def me(who: Who) -> Me:
    return {"id": who.id, "name": who.name, "role": who.role, "kind": who.kind, "scopes": sorted(who.scopes)}


@resource.get(
    "/v1/principals",
    scope="principal:read",
    summary="Users and service principals",
    response_model=Page[PrincipalView],
)
def list_principals(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> dict[str, object]:
    return page(principals.list_principals(ctx), limit, offset)


@resource.post(
    "/v1/principals",
    scope="principal:write",
    summary="Add a user or a service principal",
    status_code=201,
    response_model=PrincipalView,
    errors={409: "A principal of that name exists"},
)
def add_principal(ctx: Ctx, body: NewPrincipal) -> PrincipalView:
    return principals.add_principal(ctx, body.name, role=body.role, kind=body.kind)


@resource.post(
    "/v1/principals/{name}/disable",
    scope="principal:write",
    summary="Disable a principal (its tokens stop working)",
    response_model=PrincipalView,
)
def disable_principal(ctx: Ctx, name: str) -> PrincipalView:
    return principals.disable_principal(ctx, name)


@resource.get(
    "/v1/tokens",
    scope="principal:read",
    summary="Tokens (never their secrets)",
    response_model=Page[TokenView],
    errors={404: "No principal of that name"},
)
def list_tokens(
    ctx: Ctx, principal: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, object]:
    return page(principals.list_tokens(ctx, principal), limit, offset)


@resource.post(
    "/v1/principals/{name}/tokens",
    scope="principal:write",
    summary="Create a token for a principal (the answer holds it, this once)",
    status_code=201,
    response_model=TokenCreated,
)
def create_token(ctx: Ctx, name: str, body: Annotated[NewToken, Body()] = NewToken()) -> TokenCreated:
    return principals.create_token(ctx, name, expires=body.expires)


@resource.delete(
    "/v1/tokens/{token_id}", scope="principal:write", summary="Revoke a token", response_model=TokenView
)
def revoke_token(ctx: Ctx, token_id: str) -> TokenView:
    return principals.revoke_token(ctx, token_id)


@resource.get(
    "/v1/settings", scope="settings:read", summary="The workspace's settings", response_model=Settings
)
def get_settings(ctx: Ctx) -> Settings:
    return settings.get_settings(ctx)


@resource.put(
    "/v1/settings/{key}",
    scope="settings:write",
    summary="Change one setting (audited)",
    response_model=Settings,
)
def set_setting(ctx: Ctx, key: str, body: SettingChange) -> Settings:
    return settings.set_setting(ctx, key, body.value)
