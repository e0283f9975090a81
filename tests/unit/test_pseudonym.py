"""Keyed pseudonyms: stable per key and hospital, unlinkable across keys and hospitals, never the
clear identifier; keyed UIDs are valid DICOM UIDs."""

from __future__ import annotations

import re

import pytest

from services.publisher.pseudonym import Pseudonymizer, is_placeholder_id, load_key_from_env

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


H = "H001"


def test_same_key_and_id_give_the_same_ref() -> None:
    assert Pseudonymizer(KEY).patient_ref("P0042", hospital_id=H) == Pseudonymizer(
        KEY).patient_ref("P0042", hospital_id=H)


def test_ref_is_32_lowercase_hex_without_the_identifier() -> None:
    ref = Pseudonymizer(KEY).patient_ref("123456", hospital_id=H, issuer="MRN")
    assert re.fullmatch(r"[0-9a-f]{32}", ref)
    assert "123456" not in ref


def test_a_different_key_gives_a_different_ref() -> None:
    assert Pseudonymizer(KEY).patient_ref("P0042", hospital_id=H) != Pseudonymizer(
        OTHER_KEY).patient_ref("P0042", hospital_id=H)


def test_patient_ref_is_scoped_to_the_hospital() -> None:
    """One key shared by two hospitals must not link their equal PatientIDs."""
    p = Pseudonymizer(KEY)
    assert p.patient_ref("P0042", hospital_id="H001") != p.patient_ref("P0042",
                                                                       hospital_id="H002")
    assert p.unlinked_patient_ref("1.2.3", hospital_id="H001") != p.unlinked_patient_ref(
        "1.2.3", hospital_id="H002")


def test_issuer_hospital_and_id_are_not_confused() -> None:
    p = Pseudonymizer(KEY)
    assert p.patient_ref("P0042", hospital_id=H, issuer="A") != p.patient_ref(
        "P0042", hospital_id=H, issuer="B")
    assert p.patient_ref("P0042", hospital_id=H) != p.patient_ref("42", hospital_id=H,
                                                                  issuer="P00")
    assert p.patient_ref("P1", hospital_id="H0", issuer="01") != p.patient_ref(
        "P1", hospital_id="H00", issuer="1")


def test_patient_accession_uid_and_device_refs_are_domain_separated() -> None:
    p = Pseudonymizer(KEY)
    assert p.patient_ref("A1", hospital_id=H) != p.accession_ref("A1", H)
    assert p.unlinked_patient_ref("1.2.3", hospital_id=H) != p.patient_ref("1.2.3",
                                                                           hospital_id=H)
    assert p.device_ref("1.2.3", hospital_id=H)[4:] not in p.patient_ref("1.2.3", hospital_id=H)
    assert p.uid("1.2.3", hospital_id=H)[5:] != str(int(p.patient_ref("1.2.3", hospital_id=H),
                                                        16))


@pytest.mark.parametrize("uid", ["1.2.3", "1.2.840.10008.19610312.778899", "9" * 64])
def test_keyed_uid_is_a_valid_dicom_uid_stable_and_scoped(uid: str) -> None:
    p = Pseudonymizer(KEY)
    keyed = p.uid(uid, hospital_id=H)
    # DICOM PS3.5 9.1: digits and dots, no leading zero in a component, at most 64 characters.
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", keyed) and len(keyed) <= 64
    assert int(keyed[5:]) < 2**128
    assert keyed == p.uid(uid, hospital_id=H)
    assert keyed != p.uid(uid, hospital_id="H002")
    assert keyed != Pseudonymizer(OTHER_KEY).uid(uid, hospital_id=H)
    assert "19610312" not in keyed and "778899" not in keyed


@pytest.mark.parametrize("value", ["", " ", "UNKNOWN", "unknown", "Unk", "ANONYMOUS", "anon",
                                   "0", "000000", "N/A", "n/a", "NA", "NONE", "null", "-",
                                   "?", "XXXXXX", "99999999", "--", "Anonymized"])
def test_placeholder_ids_are_recognised(value: str) -> None:
    assert is_placeholder_id(value)


@pytest.mark.parametrize("value", ["P0042", "12345678", "MRN-778899", "A1", "00001"])
def test_real_ids_are_not_placeholders(value: str) -> None:
    assert not is_placeholder_id(value)


def test_accession_ref_is_scoped_to_the_hospital() -> None:
    p = Pseudonymizer(KEY)
    assert p.accession_ref("ACC1", "H001") != p.accession_ref("ACC1", "H002")


def test_short_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="too short"):
        Pseudonymizer(b"x" * 15)


def test_repr_hides_the_key() -> None:
    assert "k" * 16 not in repr(Pseudonymizer(KEY))


def test_load_key_from_env_reads_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", "ab" * 32)
    assert load_key_from_env() == bytes.fromhex("ab" * 32)


def test_load_key_from_env_names_the_variable_when_unset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RADSTREAM_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ValueError, match="RADSTREAM_PSEUDONYM_KEY is not set"):
        load_key_from_env()


def test_load_key_from_env_never_echoes_a_short_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", "secret-ish")
    with pytest.raises(ValueError) as info:
        load_key_from_env()
    assert "secret-ish" not in str(info.value)


def test_any_decoded_header_value_has_a_ref() -> None:
    """A value decoded with surrogate escapes (undecodable bytes) still gets a stable ref."""
    p = Pseudonymizer(KEY)
    assert p.patient_ref("P\udcff", hospital_id=H) == p.patient_ref("P\udcff", hospital_id=H)
    assert p.uid("1.2\udc80", hospital_id=H) != p.uid("1.2", hospital_id=H)
