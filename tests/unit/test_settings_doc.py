"""Worker settings: one declaration per setting, parsed generically from the environment, and the
README's settings table generated from the declarations (so it cannot drift)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.ops import settings_doc
from streams.kafka.security import KafkaSecurity, KafkaSecurityError
from streams.settings import REPO_ROOT, Settings, SettingsError, declarations

#: The variables and defaults deployments, scripts and tests already use: they must not change.
KNOWN = {
    "RADSTREAM_KAFKA": "127.0.0.1:9092", "RADSTREAM_TRITON_GRPC": "127.0.0.1:8001",
    "RADSTREAM_DICOM_ROOTS": (REPO_ROOT / ".state" / "dicom",), "RADSTREAM_APP_ID": "radstream",
    "RADSTREAM_BIND_HOST": "127.0.0.1", "RADSTREAM_WEB_PORT": 6066,
    "RADSTREAM_METRICS_PORT": 9108, "RADSTREAM_SERVICES": (), "RADSTREAM_INTAKE_HOSPITALS": (),
    "RADSTREAM_BATCH_MAX": 32, "RADSTREAM_BATCH_WITHIN_S": 0.05,
    "RADSTREAM_STATS_BATCH_MAX": 512, "RADSTREAM_STATS_BATCH_WITHIN_S": 0.5,
    "RADSTREAM_PRODUCER_LINGER_S": 0.005, "RADSTREAM_FETCH_MAX_WAIT_S": 0.1,
    "RADSTREAM_PREPROCESS_PROCESSES": 2, "RADSTREAM_PREPROCESS_THREADS": 2,
    "RADSTREAM_TRITON_ATTEMPTS": 6, "RADSTREAM_TRITON_TIMEOUT_S": 30.0,
    "RADSTREAM_MAX_FILE_BYTES": 64 * 1024 * 1024, "RADSTREAM_MAX_PIXEL_BYTES": 128 * 1024 * 1024,
    "RADSTREAM_MAX_EVENT_BYTES": 1024 * 1024, "RADSTREAM_QUALITY_AUC_FLOOR": 0.81,
    "RADSTREAM_QUALITY_AUC_Z": 1.96, "RADSTREAM_QUALITY_MIN_REVIEWS": 40,
    "RADSTREAM_QUALITY_WINDOW": 400, "RADSTREAM_QUALITY_DEVICE_WINDOW": 80,
    "RADSTREAM_QUALITY_DEFECT_CEILING": 0.05, "RADSTREAM_QUALITY_DEFECT_WINDOW": 200,
    "RADSTREAM_QUALITY_DEFECT_MIN_FINDINGS": 50, "RADSTREAM_QUALITY_REARM_MARGIN": 0.02,
    "RADSTREAM_DEDUP_HORIZON_S": 86400.0, "RADSTREAM_REVIEW_HORIZON_S": 1209600.0,
    "RADSTREAM_OFFSET_RESET": "earliest", "RADSTREAM_SESSION_TIMEOUT_S": 15.0,
    "RADSTREAM_STORE": "memory://", "RADSTREAM_DATADIR": REPO_ROOT / ".state" / "faust",
    "RADSTREAM_KAFKA_SECURITY": KafkaSecurity(), "RADSTREAM_MODEL_OVERRIDE": "",
}


def test_every_setting_is_declared_once_and_known_variables_keep_their_defaults() -> None:
    defaults = Settings()
    declared = {decl.env: getattr(defaults, f.name) for f, _, decl in declarations()}
    assert len(declared) == len(list(declarations())), "two settings share a variable"
    assert {env: declared.get(env) for env in KNOWN} == KNOWN
    for _, _, decl in declarations():
        assert decl.doc and "\n" not in decl.doc and "|" not in decl.doc, decl.env


def test_readme_settings_table_is_generated_from_the_declarations() -> None:
    text = settings_doc.README.read_text()
    assert settings_doc.render() in text
    assert settings_doc.main(["--check"]) == 0, "run: python -m services.ops.settings_doc"
    for _, _, decl in declarations():
        assert f"| `{decl.env}` |" in text


def test_the_check_fails_on_a_drifted_table() -> None:
    text = settings_doc.updated(settings_doc.README.read_text())
    drifted = text.replace("| `RADSTREAM_DATADIR` |", "| `RADSTREAM_DATA_DIR` |")
    assert drifted != text
    assert settings_doc.updated(drifted) == text
    with pytest.raises(ValueError, match="markers"):
        settings_doc.updated(text.replace(settings_doc.BEGIN, ""))


def test_unset_variables_keep_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    # An empty list keeps the default, as before the declarations.
    assert Settings.from_env({"RADSTREAM_DICOM_ROOTS": ""}).dicom_roots == Settings().dicom_roots


def test_every_kind_of_value_parses() -> None:
    s = Settings.from_env({
        "RADSTREAM_KAFKA": "k1:9092,k2:9092",
        "RADSTREAM_WEB_PORT": "7000",
        "RADSTREAM_BATCH_WITHIN_S": "0.25",
        "RADSTREAM_DATADIR": "/var/lib/radstream",
        "RADSTREAM_DICOM_ROOTS": os.pathsep.join(["/a", "", "/b"]),
        "RADSTREAM_SERVICES": "chest-xray,,head-ct",
        "RADSTREAM_KAFKA_SECURITY": "SASL_SSL",
        "RADSTREAM_KAFKA_USER": "worker",
        "RADSTREAM_KAFKA_PASSWORD": "s3cret",
        "RADSTREAM_MODEL_OVERRIDE": "identity",
    })
    assert s.kafka == "k1:9092,k2:9092"
    assert s.web_port == 7000 and isinstance(s.web_port, int)
    assert s.batch_within_s == 0.25
    assert s.datadir == Path("/var/lib/radstream")
    assert s.dicom_roots == (Path("/a"), Path("/b"))
    assert s.services == ("chest-xray", "head-ct")
    assert s.kafka_security == KafkaSecurity("sasl_ssl", "worker", "s3cret")
    assert s.model_override == "identity"
    assert s.metrics_port == Settings().metrics_port


@pytest.mark.parametrize(("env", "raw"), [
    ("RADSTREAM_WEB_PORT", "66a"), ("RADSTREAM_BATCH_MAX", "3.5"),
    ("RADSTREAM_QUALITY_AUC_FLOOR", "high"), ("RADSTREAM_MAX_FILE_BYTES", ""),
])
def test_a_value_that_does_not_parse_names_its_variable(env: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{env} must be .*{raw!r}"):
        Settings.from_env({env: raw})


def test_kafka_security_keeps_its_own_checks() -> None:
    with pytest.raises(KafkaSecurityError, match="RADSTREAM_KAFKA_SECURITY"):
        Settings.from_env({"RADSTREAM_KAFKA_SECURITY": "ssl"})
