"""The public API is what ``disgorge.__all__`` says, and every name in it exists."""

from __future__ import annotations

import disgorge


def test_all_names_exist_and_nothing_else_is_public() -> None:
    for name in disgorge.__all__:
        assert hasattr(disgorge, name), name
    public = {n for n in dir(disgorge) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(disgorge, n)).__name__ == "module"}
    assert public - modules == set(disgorge.__all__) - {"__version__"}


def test_errors_share_one_root() -> None:
    for name in ("IntegrityError", "InvalidInput", "KekError", "KeyDestroyed", "NotFound", "WorkspaceError"):
        assert issubclass(getattr(disgorge, name), disgorge.DisgorgeError)
