"""Recipients, senders and transfers over the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from .base import Transport, seg

if TYPE_CHECKING:
    from ..sharing.peers import PeerView
    from ..sharing.transfers import TransferView

__all__ = ["SharingCalls"]


class SharingCalls(Transport):
    def iter_recipients(self) -> Iterator[PeerView]:
        """Organisations this workspace sends photos to, by name."""
        return cast("Iterator[PeerView]", self.pages("/v1/recipients"))

    def add_recipient(
        self, name: str, public_key: str, *, endpoint: str = "", agreement: str = ""
    ) -> PeerView:
        """Register a recipient and its Ed25519 public key (PEM, or 64 hex digits)."""
        body = {"name": name, "public_key": public_key, "endpoint": endpoint, "agreement": agreement}
        return cast("PeerView", self.request("POST", "/v1/recipients", json=body))

    def iter_senders(self) -> Iterator[PeerView]:
        """Organisations this workspace accepts photos and erasure requests from, by name."""
        return cast("Iterator[PeerView]", self.pages("/v1/senders"))

    def add_sender(self, name: str, public_key: str, *, endpoint: str = "", agreement: str = "") -> PeerView:
        """Register a sender and its Ed25519 public key (PEM, or 64 hex digits)."""
        body = {"name": name, "public_key": public_key, "endpoint": endpoint, "agreement": agreement}
        return cast("PeerView", self.request("POST", "/v1/senders", json=body))

    def iter_transfers(
        self, *, direction: str | None = None, peer: str | None = None
    ) -> Iterator[TransferView]:
        """Transfers made (``out``) and received (``in``), oldest first."""
        found = self.pages("/v1/transfers", direction=direction, peer=peer)
        return cast("Iterator[TransferView]", found)

    def transfer(self, transfer_id: str) -> TransferView:
        """One transfer, by its id or a unique prefix of it."""
        return cast("TransferView", self.request("GET", f"/v1/transfers/{seg(transfer_id)}"))
