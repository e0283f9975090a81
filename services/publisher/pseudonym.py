"""Keyed pseudonyms: a patient's studies stay linkable without the patient being on the bus.

A pseudonym is HMAC-SHA256(key, domain tag + hospital + identifier), hex, truncated to 128 bits
(32 characters). The same key, hospital and identifier always give the same ref, so analysts can
count studies per patient; without the key nobody can recompute a ref from a known patient ID (a
plain hash of a short ID is reversible by enumeration, a keyed one is not). Each kind of
identifier has its own domain tag, so a patient ID and an accession number that happen to be
equal never share a ref, and every ref is scoped to the hospital that issued the identifier: two
hospitals' "P0042" are two patients, and a key shared by several hospitals links nobody across
them.

DICOM UIDs get the same treatment (`uid`): a StudyInstanceUID can embed an MRN or a birth date,
so the bus carries `2.25.<decimal of 128 bits of HMAC>` instead, a valid DICOM UID that is the
same for the same (hospital, UID), so a study announced twice is still one study.

Key handling and rotation:

- The key lives at the hospital side only (publisher host, `RADSTREAM_PSEUDONYM_KEY`). Never ship
  it to the bus side (brokers, workers, analytics) and never print or log it.
- Rotating means publishing with a new key: from then on every patient gets new refs, and the bus
  side can no longer link new studies to old ones. That is the point of a rotation after a leak.
- Keep the retired key at the hospital side (access-controlled) if history must be linked later:
  the hospital can recompute both refs for its own patients and give a mapping to an authorised
  party. Destroying the old key makes the old refs permanently unlinkable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

#: Bytes of secret the key must have at least (128 bits).
MIN_KEY_BYTES = 16
#: Hex characters kept from the HMAC (128 bits: collisions are negligible at city scale).
REF_HEX_CHARS = 32

#: Bits of HMAC kept in a keyed UID: 2.25.<at most 39 digits> stays well under DICOM's 64.
UID_BITS = 128
#: Hex characters of HMAC in a device pseudonym ("dev-" + 20 hex = 80 bits).
DEVICE_HEX_CHARS = 20

_PATIENT_TAG = b"patient\x00"
_ACCESSION_TAG = b"accession\x00"
_UNLINKED_TAG = b"unlinked-patient\x00"
_UID_TAG = b"uid\x00"
_DEVICE_TAG = b"device\x00"

#: Values hospitals put in PatientID when they have none (compared without case and punctuation).
_PLACEHOLDER_IDS = frozenset({
    "UNKNOWN", "UNK", "ANONYMOUS", "ANON", "ANONYMIZED", "ANONYMISED", "NONE", "NULL", "NIL",
    "NA", "NAN", "NOTAVAILABLE", "UNDEFINED", "MISSING", "EMPTY", "NOID", "NOPID", "TEST"})
_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def is_placeholder_id(value: str) -> bool:
    """True for an empty or stand-in identifier ("", "UNKNOWN", "N/A", "0", "000000", "----"):
    such values name no one, so they must never link studies to one pseudonymous patient."""
    core = _NOT_ALNUM.sub("", value.upper())
    return not core or core in _PLACEHOLDER_IDS or len(set(core)) == 1


class Pseudonymizer:
    """Turns hospital identifiers into keyed pseudonyms; holds the key and never shows it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError("pseudonym key must be bytes")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonym key too short: {len(key)} bytes, need at least "
                             f"{MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<hidden>)"

    def _digest(self, tag: bytes, *parts: str) -> bytes:
        # surrogatepass: a header value decoded with escapes still has one stable encoding.
        message = tag + b"\x00".join(p.encode("utf-8", "surrogatepass") for p in parts)
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _ref(self, tag: bytes, *parts: str) -> str:
        return self._digest(tag, *parts).hex()[:REF_HEX_CHARS]

    def patient_ref(self, patient_id: str, *, hospital_id: str, issuer: str = "") -> str:
        """Ref for a patient ID, scoped to the hospital; `issuer` (DICOM IssuerOfPatientID)
        keeps equal IDs of one hospital's several registries apart."""
        return self._ref(_PATIENT_TAG, hospital_id, issuer, patient_id)

    def unlinked_patient_ref(self, study_uid: str, *, hospital_id: str) -> str:
        """Ref for a study whose patient has no usable ID: unique to the study, linked to
        nothing."""
        return self._ref(_UNLINKED_TAG, hospital_id, study_uid)

    def accession_ref(self, accession: str, hospital_id: str) -> str:
        """Ref for an accession number, scoped to the hospital that issued it."""
        return self._ref(_ACCESSION_TAG, hospital_id, accession)

    def uid(self, uid: str, *, hospital_id: str) -> str:
        """The keyed stand-in for a DICOM UID: ``2.25.<int>`` (DICOM PS3.5 B.2), the same for
        the same (hospital, UID), unrelated to the original for anyone without the key."""
        value = int.from_bytes(self._digest(_UID_TAG, hospital_id, uid)[:UID_BITS // 8], "big")
        return f"2.25.{value}"

    def device_ref(self, identity: str, *, hospital_id: str) -> str:
        """A device id for a device the hospital's configuration does not name, from what
        identifies it (manufacturer, model, serial number, station name)."""
        return "dev-" + self._digest(_DEVICE_TAG, hospital_id, identity).hex()[:DEVICE_HEX_CHARS]


def load_key_from_env(var: str = "RADSTREAM_PSEUDONYM_KEY") -> bytes:
    """Read the key from the environment: hex if it parses as hex, otherwise its UTF-8 bytes.

    The error messages name the variable, never its value.
    """
    raw = os.environ.get(var, "")
    if not raw.strip():
        raise ValueError(f"{var} is not set: the hospital's pseudonym key is required "
                         f"(generate one with `openssl rand -hex 32`, keep it at the hospital)")
    text = raw.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{var} is too short: need at least {MIN_KEY_BYTES} bytes of key "
                         f"(e.g. `openssl rand -hex 32`)")
    return key
