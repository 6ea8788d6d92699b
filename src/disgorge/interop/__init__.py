"""Interoperability with open standards: OpenLineage run events and Croissant exports.

* :mod:`disgorge.interop.openlineage` sends a RunEvent (START, COMPLETE, FAIL) for every
  dataset build and run, when ``[openlineage] transport`` is set in the workspace config
  (needs the optional ``lineage`` extra: ``pip install 'disgorge[lineage]'``);
* :mod:`disgorge.interop.croissant` describes a dataset version as Croissant 1.1 JSON-LD,
  with its consent coverage in a ``disgorge:`` extension.

Both name datasets, sources and artifacts only: never a subject, an external id or a
photo. See docs/standards.md for the mappings.
"""

from __future__ import annotations

from .._version import __version__

__all__ = ["DISGORGE_IRI", "PRODUCER"]

#: the base of disgorge's identifiers in other standards (a w3id.org permanent-identifier
#: namespace): the OpenLineage producer, the custom facet's schema, the Croissant extension
DISGORGE_IRI = "https://w3id.org/disgorge/"
#: the OpenLineage ``producer`` / ``_producer`` of everything disgorge emits
PRODUCER = f"{DISGORGE_IRI}releases/{__version__}"
