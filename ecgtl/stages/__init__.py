"""Stages compose data, models, training, evaluation and tracking from one typed config each."""
