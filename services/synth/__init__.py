"""Synthetic city data: chest X-ray phantoms written as real DICOM studies with ground truth."""
