"""Write docs/services.md from streams/contract/catalog.toml and the model cards.

The catalog is the one source of truth; this page is generated from it, and a unit test checks
that the committed page is current, so the documentation of every finding code cannot drift.

    python -m services.ops.catalog_doc            # rewrite docs/services.md
    python -m services.ops.catalog_doc --check    # exit 1 when docs/services.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.contract.catalog import CatalogError, ServiceSpec, catalog, model_card
from streams.contract.topics import work_topic
from streams.imaging.defects import EVIDENCE_READS, FIRES_WHEN

DOC = Path(__file__).resolve().parents[2] / "docs" / "services.md"


def _card_finding(spec: ServiceSpec, code: str) -> tuple[str, str]:
    """(threshold, held-out AUC) as printed, or dashes while the model is untrained."""
    try:
        card = model_card(spec.model)
    except CatalogError:
        return "–", "–"
    per = card.get("findings", {}).get(code, {})
    threshold = per.get("threshold", card.get("threshold"))
    auc = per.get("heldout_auc", card.get("heldout_auc"))
    return (f"{threshold:.4g}" if isinstance(threshold, float | int) else "–",
            f"{auc:.3f}" if isinstance(auc, float | int) else "–")


def _selection(spec: ServiceSpec) -> str:
    sel = spec.select
    parts = [f"modality {', '.join(sorted(sel.modalities))}",
             f"body part {', '.join(sorted(sel.body_parts))}"]
    if sel.series_description is not None:
        parts.append(f"series description matches `{sel.series_description.pattern}`")
    if sel.exclude_series_description is not None:
        parts.append(f"and not `{sel.exclude_series_description.pattern}`")
    if sel.sexes:
        parts.append(f"sex {', '.join(sorted(sel.sexes))}")
    if sel.min_age is not None or sel.max_age is not None:
        parts.append(f"age {sel.min_age if sel.min_age is not None else 0}–"
                     f"{sel.max_age if sel.max_age is not None else ''}")
    return "; ".join(parts)


def render() -> str:
    specs = catalog()
    out = [
        "# AI services",
        "",
        "Generated from `streams/contract/catalog.toml` and `streams/contract/model_cards/` by",
        "`python -m services.ops.catalog_doc`; do not edit by hand. Every model is trained on",
        "synthetic phantoms only and is **NOT FOR CLINICAL USE**.",
        "",
        f"{len(specs)} services, {sum(len(s.findings) for s in specs)} finding codes. A study",
        "reaches every service whose selection one of its series matches; a study no service",
        "reads gets a `not_applicable` Finding (service `none`).",
        "",
        "| service | clinical area | model | findings | priority lane |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in specs:
        out.append(f"| `{s.id}` | {s.clinical_area} | `{s.model}` | {len(s.findings)} | "
                   f"{'yes' if s.priority_lane else 'no'} |")
    out += [
        "", "## Technical defects: what each check needs to fire", "",
        "A study a check rejects gets a `technical_defect` Finding and no model result, so "
        "every check fires only on evidence that holds across acquisition styles and abstains "
        "(the study goes to the model) where the evidence is weak or contradicts itself "
        "(`streams/imaging/defects.py`). The limits and the contrast evidence of each service "
        "are in its section below.", "",
        *(f"- **{name}**: {text}." for name, text in FIRES_WHEN.items()), "",
        "Contrast evidence a service may declare (`contrast_evidence` in the catalog):", "",
        *(f"- `{name}`: {text}." for name, text in EVIDENCE_READS.items()),
    ]
    for s in specs:
        prep = s.preprocess
        windows = ", ".join(
            f"{c:g}/{w:g}" + (" (MIP slabs)" if prep.projection(i) == "max" else "")
            for i, (c, w) in enumerate(prep.windows)) or "file's own, else robust"
        out += [
            "", f"## `{s.id}` — {s.clinical_area}", "", s.description, "",
            f"- Selects: {_selection(s)}.",
            f"- Work topic: `{work_topic(s.id).name}`"
            + (f", priority lane `{work_topic(s.id, 'priority').name}`" if s.priority_lane
               else "") + ".",
            f"- Model: Triton `{s.model}` v{s.model_version}, input `{s.input_name}` "
            f"[{prep.channels}, {prep.size}, {prep.size}], output `{s.output_name}`"
            + (f" and `{s.measurement_output}`" if s.measurement_output else "")
            + f"; card `streams/contract/model_cards/{s.model}.md`.",
            f"- Preprocessing: {prep.slabs} slab(s), window(s) {windows}, resized to "
            f"{prep.size}x{prep.size}.",
            f"- Technical-defect checks: {s.checks.min_slices}–{s.checks.max_slices} slices, "
            f"pixel spacing {s.checks.pixel_spacing_mm[0]:g}–{s.checks.pixel_spacing_mm[1]:g} mm"
            + (f", slice spacing {s.checks.slice_spacing_mm[0]:g}–"
               f"{s.checks.slice_spacing_mm[1]:g} mm" if s.checks.max_slices > 1 else "")
            + ", identity (modality/body part), inverted contrast "
            + (f"on evidence of {', '.join(f'`{e}`' for e in s.checks.contrast_evidence)}"
               if s.checks.contrast_evidence else "never (no evidence declared)") + ".",
            "", "| code | finding | description | threshold | held-out AUC |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f in s.findings:
            threshold, auc = _card_finding(s, f.code)
            unit = f" (measured in {f.unit})" if f.unit else ""
            out.append(f"| `{f.code}` | {f.display}{unit} | {f.description} | {threshold} | "
                       f"{auc} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/services.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python -m services.ops.catalog_doc", file=sys.stderr)
            return 1
        return 0
    Path(DOC).write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
