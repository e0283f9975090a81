"""City statistics and clinical-quality monitoring as pure logic: counting, sketches, windows, AUC,
quality, consumer lag."""
