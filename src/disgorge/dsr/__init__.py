"""Data-subject requests as a privacy office handles them (issue #15).

- :mod:`.cases`: requests as cases with due dates, extensions and identity verification;
- :mod:`.export`: the access export (GDPR Art. 15): everything held about a person, signed;
- :mod:`.retention`: retention schedules: a source's or a dataset's photos erased once
  kept longer than its rule, one erasure and one certificate per run;

(The sealed perceptual blocklist of erased photos is :mod:`disgorge.vision.blocklist`: the
erasure and the ingest, both below this package, use it.)
"""
