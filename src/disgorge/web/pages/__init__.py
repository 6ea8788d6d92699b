"""The UI's pages, one module per group, each with a ``router`` (:func:`..framework.page_router`)."""
