"""Studies: declarative sweeps over the device / periphery / agent configuration (``stoxbar sweep``).

``spec`` parses and validates study files, ``worker`` runs one trial (point x seed) in its own
process, ``runner`` schedules trials on a local process pool or a Ray cluster and resumes, ``table``
writes the tidy results table, ``plots`` its figures and ``report`` a self-contained HTML page.

May import: stoxbar.studies.
"""

from stoxbar.studies.spec import Study, StudyError, load_study

__all__ = ["Study", "StudyError", "load_study"]
