"""Recipients (we send photos to), senders (we accept them from), and the transfers made.

A peer is a name and an Ed25519 public key, given as PEM or as 64 hex digits of the raw
key (its ``.disgorge/signing.pub``, or what its server answers at ``GET /v1/public-key``);
documents from a peer are checked against the key registered here, never against one a
document brings. Registering a peer is audited with the caller's name. Transfers are
listed oldest first; one is named by its id or a unique prefix of it (6 characters at least).
"""

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, Field

from ...sharing import peers, transfers
from ...sharing.peers import PeerView
from ...sharing.transfers import TransferView
from ..deps import Ctx, Limit, Offset, Page, page
from ..table import Resource

__all__ = ["resource"]

resource = Resource("sharing", "Recipients, senders, and the transfers of photos between workspaces.")


class NewPeer(BaseModel):
    #: how this workspace names the organisation (no '/')
    name: str = Field(min_length=1, max_length=128)
    #: its Ed25519 public key: PEM, or 64 hex digits of the raw key
    public_key: str = Field(min_length=1, max_length=4000)
    #: where its inbox listens (http or https), if it has one
    endpoint: str = Field(default="", max_length=2000)
    #: the data-sharing agreement that covers it, e.g. DSA-7
    agreement: str = Field(default="", max_length=500)


_ADD_ERRORS = {422: "A malformed public key or endpoint, a bad name, or a peer of that name exists"}


def _add(ctx: Ctx, role: str, body: NewPeer) -> PeerView:
    return peers.add_peer(
        ctx,
        role,
        body.name,
        public_key=body.public_key.encode(),
        endpoint=body.endpoint,
        agreement=body.agreement,
    )


@resource.get(
    "/v1/recipients",
    scope="sharing:read",
    summary="Recipients (organisations this workspace sends photos to), by name",
    response_model=Page[PeerView],
)
def list_recipients(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> dict[str, object]:
    return page(peers.list_peers(ctx, "recipient"), limit, offset)


@resource.post(
    "/v1/recipients",
    scope="sharing:write",
    summary="Register a recipient and its public key",
    status_code=201,
    response_model=PeerView,
    errors=_ADD_ERRORS,
)
def add_recipient(ctx: Ctx, body: NewPeer) -> PeerView:
    return _add(ctx, "recipient", body)


@resource.get(
    "/v1/senders",
    scope="sharing:read",
    summary="Senders (organisations this workspace accepts photos and requests from), by name",
    response_model=Page[PeerView],
)
def list_senders(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> dict[str, object]:
    return page(peers.list_peers(ctx, "sender"), limit, offset)


@resource.post(
    "/v1/senders",
    scope="sharing:write",
    summary="Register a sender and its public key",
    status_code=201,
    response_model=PeerView,
    errors=_ADD_ERRORS,
)
def add_sender(ctx: Ctx, body: NewPeer) -> PeerView:
    return _add(ctx, "sender", body)


@resource.get(
    "/v1/transfers",
    scope="sharing:read",
    summary="Transfers made (out) and received (in), oldest first",
    response_model=Page[TransferView],
)
def list_transfers(
    ctx: Ctx,
    direction: Literal["out", "in"] | None = None,
    peer: Annotated[str | None, Query(max_length=128, description="a recipient's or sender's name")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    return page(transfers.list_transfers(ctx, direction=direction, peer=peer), limit, offset)


@resource.get(
    "/v1/transfers/{transfer_id}",
    scope="sharing:read",
    summary="One transfer, by its id or a unique prefix of it",
    response_model=TransferView,
)
def show_transfer(ctx: Ctx, transfer_id: str) -> TransferView:
    return transfers.show_transfer(ctx, transfer_id)
