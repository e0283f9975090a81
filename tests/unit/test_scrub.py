"""Free text reduced to closed vocabularies: whatever is typed, only vocabulary words come out,
and the words the catalog routes on survive."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from services.publisher import scrub
from streams.contract.catalog import catalog

WORD = re.compile(r"[A-Z0-9]+")


@given(st.text(max_size=200))
def test_a_description_keeps_only_vocabulary_words(text: str) -> None:
    kept = scrub.description(text)
    assert len(kept) <= scrub.DESCRIPTION_MAX
    assert set(WORD.findall(kept)) <= scrub.body_parts() | scrub.DESCRIPTION_WORDS
    assert kept == " ".join(WORD.findall(kept))


@given(st.text(max_size=40))
def test_a_body_part_is_a_defined_term_or_unknown(text: str) -> None:
    assert scrub.body_part(text) in scrub.body_parts() | {scrub.UNKNOWN_BODY_PART}


def test_names_ids_and_dates_are_dropped() -> None:
    assert scrub.description("Chest PA SMITH^JOHN 1961-03-12 MRN 778899") == "CHEST PA"
    assert scrub.description("ZELDA 19610312") == ""
    assert scrub.body_part("SMITH") == scrub.body_part("") == "UNKNOWN"
    assert scrub.body_part(" chest ") == "CHEST"


def test_vocabulary_words_carry_no_digits_beyond_sequence_codes() -> None:
    """A number in the vocabulary could be part of an MRN or a date: only these few."""
    with_digits = {w for w in scrub.DESCRIPTION_WORDS | scrub.body_parts()
                   if any(c.isdigit() for c in w)}
    assert with_digits == {"T1", "T2", "2D", "3D"}


def test_every_catalog_body_part_and_routing_phrase_survives() -> None:
    assert {p for spec in catalog() for p in spec.body_parts} <= scrub.body_parts()
    phrases = [("chest-ct", "CT THORAX WITH LUNG KERNEL"), ("ldct-screening", "Low-dose chest"),
               ("lumbar-mri", "sag t2 tse"), ("foot-xray", "FOOT LATERAL WB"),
               ("brain-mri", "AX FLAIR"), ("ldct-screening", "LDCT LUNG SCREENING")]
    for service_id, phrase in phrases:
        spec = next(s for s in catalog() if s.id == service_id)
        kept = scrub.description(phrase)
        if spec.select.series_description is not None:
            assert spec.select.series_description.search(kept), (service_id, kept)
        if spec.select.exclude_series_description is not None:
            assert not spec.select.exclude_series_description.search(kept), (service_id, kept)
    # Every service that routes on a description can still be reached through the vocabulary.
    for spec in catalog():
        if spec.select.series_description is not None:
            assert any(spec.select.series_description.search(scrub.description(p))
                       for _, p in phrases), spec.id
