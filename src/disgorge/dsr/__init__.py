"""Data-subject requests as a privacy office handles them (issue #15).

- :mod:`.cases`: requests as cases with due dates, extensions and identity verification;
- :mod:`.export`: the access export (GDPR Art. 15): everything held about a person, signed;
- :mod:`.blocklist`: the sealed perceptual hashes of erased photos, so near-copies are refused.
"""
