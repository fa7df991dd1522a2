"""Panel and switchback estimators."""
