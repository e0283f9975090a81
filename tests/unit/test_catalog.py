"""The service catalog: its content, its loader's checks, routing over it (examples and
properties), and that every finding code is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ops import catalog_doc
from streams.contract.catalog import CATALOG_FILE, CatalogError, catalog, load_catalog
from streams.rules.routing import applies, lane, matching_series, route

NOW = "2024-05-14T09:30:02Z"

#: The areas the programme requires, by service id.
REQUIRED = {"chest-ct", "chest-xray", "ldct-screening", "mammography", "head-ct", "lumbar-mri",
            "foot-xray"}


def study(*series: dict[str, Any], priority: str = "routine", **fields: Any) -> dict[str, Any]:
    first = series[0]
    body = {"study_uid": "1.2.3", "hospital_id": "H001", "device_id": "H001-D01",
            "modality": first["modality"], "body_part": first["body_part"],
            "priority": priority, "acquired_at": NOW, "published_at": NOW,
            "patient_ref": "a" * 32,
            "series": [{"series_uid": f"1.2.3.{i}", "instance_count": 1,
                        "uri": f"file:///data/{i}.dcm", **s} for i, s in enumerate(series)]}
    body.update(fields)
    return body


def s(modality: str, body_part: str, description: str = "") -> dict[str, Any]:
    out = {"modality": modality, "body_part": body_part}
    if description:
        out["description"] = description
    return out


def ids(body: dict[str, Any]) -> list[str]:
    return [spec.id for spec in route(body, catalog())]


def test_catalog_covers_twelve_areas_including_the_required_ones() -> None:
    specs = catalog()
    assert len({spec.clinical_area for spec in specs}) >= 12
    assert {spec.id for spec in specs} >= REQUIRED
    chest_ct = next(spec for spec in specs if spec.id == "chest-ct")
    assert len(chest_ct.findings) >= 9


def test_finding_codes_and_service_ids_are_unique() -> None:
    codes = [f.code for spec in catalog() for f in spec.findings]
    assert len(codes) == len(set(codes))
    assert len({spec.id for spec in catalog()}) == len(catalog())
    assert len({spec.model for spec in catalog()}) == len(catalog())


def test_every_finding_code_is_documented_in_the_generated_page() -> None:
    text = catalog_doc.DOC.read_text()
    for spec in catalog():
        for f in spec.findings:
            assert f"| `{f.code}` | {f.display}" in text
    assert catalog_doc.main(["--check"]) == 0, "run: python -m services.ops.catalog_doc"


@pytest.mark.parametrize(("series", "fields", "expected"), [
    ([s("DX", "CHEST", "PA")], {}, ["chest-xray"]),
    ([s("CT", "CHEST", "CHEST 1.0 B70f")], {}, ["chest-ct"]),
    ([s("CT", "CHEST", "LOW DOSE CHEST")], {"patient_age_years": 61}, ["ldct-screening"]),
    # a screening CT of a patient too young (or of unknown age) for the programme
    ([s("CT", "CHEST", "LOW DOSE CHEST")], {"patient_age_years": 30}, []),
    ([s("CT", "CHEST", "LOW DOSE CHEST")], {}, []),
    ([s("MG", "BREAST")], {"patient_sex": "F"}, ["mammography"]),
    ([s("MG", "BREAST")], {"patient_sex": "M"}, []),
    ([s("CT", "HEAD")], {}, ["head-ct"]),
    ([s("MR", "LSPINE", "SAG T2 TSE")], {}, ["lumbar-mri"]),
    ([s("MR", "LSPINE", "AX T1")], {}, []),
    ([s("DX", "FOOT", "FOOT LAT WB")], {}, ["foot-xray"]),
    ([s("DX", "FOOT", "FOOT AP")], {}, []),
    ([s("MR", "HEAD", "AX FLAIR")], {}, ["brain-mri"]),
    ([s("MR", "HEAD", "AX T1")], {}, []),
    ([s("DX", "ELBOW")], {}, []),
    ([s("US", "ABDOMEN")], {}, []),
    # one study, two series, two services: one Finding each
    ([s("CT", "CHEST", "CHEST"), s("CT", "ABDOMEN", "ABD")], {}, ["chest-ct", "abdomen-ct"]),
])
def test_route_examples(series: list[dict[str, Any]], fields: dict[str, Any],
                        expected: list[str]) -> None:
    assert ids(study(*series, **fields)) == expected


def test_study_level_description_is_used_when_the_series_has_none() -> None:
    body = study(s("MR", "HEAD"), study_description="BRAIN FLAIR")
    assert ids(body) == ["brain-mri"]


def test_priority_lane_only_for_urgent_work_of_services_with_a_lane() -> None:
    head = next(spec for spec in catalog() if spec.id == "head-ct")
    knee = next(spec for spec in catalog() if spec.id == "knee-xray")
    assert lane(head, study(s("CT", "HEAD"), priority="emergency")) == "priority"
    assert lane(head, study(s("CT", "HEAD"), priority="urgent")) == "priority"
    assert lane(head, study(s("CT", "HEAD"), priority="routine")) == "routine"
    assert lane(knee, study(s("DX", "KNEE"), priority="emergency")) == "routine"


MODALITIES = ["CT", "MR", "CR", "DX", "MG", "US", "PT", "NM", "XA", "RF", "OT"]
BODY_PARTS = sorted({b for spec in catalog() for b in spec.body_parts} | {"ELBOW", "SKULL"})
DESCRIPTIONS = ["", "PA", "LOW DOSE CHEST", "SAG T2", "AX FLAIR", "FOOT LAT", "screening", "T1"]
series_st = st.fixed_dictionaries({"modality": st.sampled_from(MODALITIES),
                                   "body_part": st.sampled_from(BODY_PARTS),
                                   "description": st.sampled_from(DESCRIPTIONS)})


@settings(max_examples=300, deadline=None)
@given(series=st.lists(series_st, min_size=1, max_size=4),
       sex=st.sampled_from(["M", "F", "O", None]),
       age=st.one_of(st.none(), st.integers(0, 110)),
       priority=st.sampled_from(["routine", "urgent", "emergency"]))
def test_routing_properties(series: list[dict[str, Any]], sex: str | None, age: int | None,
                            priority: str) -> None:
    fields: dict[str, Any] = {}
    if sex:
        fields["patient_sex"] = sex
    if age is not None:
        fields["patient_age_years"] = age
    body = study(*series, priority=priority, **fields)
    routed = route(body, catalog())
    # each service at most once, in catalog order
    assert [r.id for r in routed] == [c.id for c in catalog() if c in routed]
    for spec in catalog():
        chosen = matching_series(spec, body)
        assert applies(spec, body) == bool(chosen) == (spec in routed)
        for item in chosen:  # a routed series satisfies every selection rule
            assert item["modality"] in spec.modalities
            assert item["body_part"] in spec.body_parts
            if spec.select.series_description is not None:
                assert spec.select.series_description.search(item.get("description", ""))
            if spec.select.sexes:
                assert sex in spec.select.sexes
            if spec.select.min_age is not None:
                assert age is not None and age >= spec.select.min_age
    # a series whose modality/body part no service reads never creates work
    readable = {(m, b) for c in catalog() for m in c.modalities for b in c.body_parts}
    if not any((x["modality"], x["body_part"]) in readable for x in series):
        assert routed == []


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


BASE = CATALOG_FILE.read_text().split("[[service]]")[1]


def test_loader_rejects_duplicate_ids_and_codes(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="duplicate service id"):
        load_catalog(_write(tmp_path, "[[service]]" + BASE + "\n[[service]]" + BASE))
    other = BASE.replace('id = "chest-xray"', 'id = "other"')
    with pytest.raises(CatalogError, match="duplicate finding code"):
        load_catalog(_write(tmp_path, "[[service]]" + BASE + "\n[[service]]" + other))


@pytest.mark.parametrize(("old", "new", "message"), [
    ('id = "chest-xray"', 'id = "Chest X"', "service id"),
    ('modalities = ["DX", "CR"]', 'modalities = ["DX", "CR"]\nseries_description = "("',
     "not a valid regex"),
    ('code = "lung_nodule"', 'code = "Lung Nodule"', "finding code"),
    ('size = 128', 'size = 2', "implausible"),
    ('name = "cxr_lesion"\n', '', "KeyError"),
    ('id = "chest-xray"', 'id = "none"', "reserved"),
])
def test_loader_names_the_bad_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, "[[service]]" + BASE.replace(old, new, 1)))
