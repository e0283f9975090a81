"""Reading a study's DICOM series and turning it into model input: reading, series, defect checks,
preprocessing, preparation."""
