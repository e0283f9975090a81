"""Phantom generators, one module per AI service: synthetic studies with planted findings.

Each module exposes ``SERVICE`` (the catalog id), ``FINDINGS`` (finding codes in model-output
order), ``PREVALENCE`` (code -> default rate) and ``render(rng, positives) -> Phantom``.
:func:`services.synth.phantoms.registry.phantom_module` finds the module for a service.
"""
