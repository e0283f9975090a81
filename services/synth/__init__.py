"""The simulated city: every AI service's phantoms written as real DICOM studies with their
planted ground truth (city.py), device faults, and the hostile-input corpus."""
