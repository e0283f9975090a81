"""Keyed pseudonyms: stable per key, unlinkable across keys, never the clear identifier."""

from __future__ import annotations

import re

import pytest

from services.publisher.pseudonym import Pseudonymizer, load_key_from_env

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_same_key_and_id_give_the_same_ref() -> None:
    assert Pseudonymizer(KEY).patient_ref("P0042") == Pseudonymizer(KEY).patient_ref("P0042")


def test_ref_is_32_lowercase_hex_without_the_identifier() -> None:
    ref = Pseudonymizer(KEY).patient_ref("123456", issuer="H001")
    assert re.fullmatch(r"[0-9a-f]{32}", ref)
    assert "123456" not in ref


def test_a_different_key_gives_a_different_ref() -> None:
    assert Pseudonymizer(KEY).patient_ref("P0042") != Pseudonymizer(OTHER_KEY).patient_ref("P0042")


def test_issuer_and_id_are_not_confused() -> None:
    p = Pseudonymizer(KEY)
    assert p.patient_ref("P0042", issuer="H001") != p.patient_ref("P0042", issuer="H002")
    assert p.patient_ref("P0042") != p.patient_ref("42", issuer="P00")


def test_patient_and_accession_refs_are_domain_separated() -> None:
    p = Pseudonymizer(KEY)
    assert p.patient_ref("A1", issuer="H001") != p.accession_ref("A1", "H001")
    assert p.unlinked_patient_ref("1.2.3") != p.patient_ref("1.2.3")


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
