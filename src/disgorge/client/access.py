"""The workspace at a glance, who is calling, principals, tokens and settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from .base import Transport, seg

if TYPE_CHECKING:
    from ..access.principals import PrincipalView, TokenCreated, TokenView
    from ..access.settings import Settings
    from ..api.routes.admin import Me
    from ..maintenance import StatusView

__all__ = ["AccessCalls"]


class AccessCalls(Transport):
    def status(self) -> StatusView:
        """Counts of what the workspace holds."""
        return cast("StatusView", self.request("GET", "/v1/status"))

    def me(self) -> Me:
        """The calling principal: its name, role and scopes."""
        return cast("Me", self.request("GET", "/v1/me"))

    def iter_principals(self) -> Iterator[PrincipalView]:
        """Users and service principals."""
        return cast("Iterator[PrincipalView]", self.pages("/v1/principals"))

    def add_principal(self, name: str, *, role: str, kind: str = "user") -> PrincipalView:
        """Add a user or a service principal (``kind="service"``) with a role."""
        body = {"name": name, "role": role, "kind": kind}
        return cast("PrincipalView", self.request("POST", "/v1/principals", json=body))

    def disable_principal(self, name: str) -> PrincipalView:
        """Disable a principal: its tokens stop working."""
        return cast("PrincipalView", self.request("POST", f"/v1/principals/{seg(name)}/disable"))

    def iter_tokens(self, principal: str | None = None) -> Iterator[TokenView]:
        """Tokens (never their secrets), of one principal or of all."""
        return cast("Iterator[TokenView]", self.pages("/v1/tokens", principal=principal))

    def create_token(self, principal: str, *, expires: str = "90d") -> TokenCreated:
        """A new token for ``principal`` (``90d``, ``12h``, ``2w`` or ``never``): the answer
        holds its secret, this once."""
        path = f"/v1/principals/{seg(principal)}/tokens"
        return cast("TokenCreated", self.request("POST", path, json={"expires": expires}))

    def revoke_token(self, token_id: str) -> TokenView:
        return cast("TokenView", self.request("DELETE", f"/v1/tokens/{seg(token_id)}"))

    def settings(self) -> Settings:
        """The workspace's settings (the two-person rule)."""
        return cast("Settings", self.request("GET", "/v1/settings"))

    def set_setting(self, key: str, value: int) -> Settings:
        """Change one setting (audited)."""
        return cast("Settings", self.request("PUT", f"/v1/settings/{seg(key)}", json={"value": value}))
