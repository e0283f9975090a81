"""Hospital-side publisher: DICOM folders in, StudyAnnounced events on radiology.studies.v1 out.

`scan` reads headers, `announce` builds event bodies (pure), `scrub` reduces free text to closed
vocabularies, `pseudonym` keeps patient identifiers and UIDs at the hospital, `stage` puts each
announced series under `<root>/<hospital_id>/` with keyed names, `producer` sends, `cli` is
`radstream publish`.
"""

from services.publisher.announce import build_announcement, sanitize_id
from services.publisher.cli import (
    build_announcements,
    publish_path,
    register,
    stage_announcements,
)
from services.publisher.producer import PublishReport, StudyPublisher
from services.publisher.pseudonym import Pseudonymizer, load_key_from_env
from services.publisher.scan import (
    InstanceHeader,
    ScanStats,
    SeriesGroup,
    StudyGroup,
    group_instances,
    read_header,
    scan_tree,
)
from services.publisher.stage import stage_announcement

__all__ = [
    "InstanceHeader",
    "Pseudonymizer",
    "PublishReport",
    "ScanStats",
    "SeriesGroup",
    "StudyGroup",
    "StudyPublisher",
    "build_announcement",
    "build_announcements",
    "group_instances",
    "load_key_from_env",
    "publish_path",
    "read_header",
    "register",
    "sanitize_id",
    "scan_tree",
    "stage_announcement",
    "stage_announcements",
]
