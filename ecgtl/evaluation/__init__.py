"""Evaluation: discrimination metrics with CIs, the CinC 2020 challenge metric, calibration, figures, reports."""
