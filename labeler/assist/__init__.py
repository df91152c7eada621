"""Labelling that learns from the annotator: suggestions, the "label next" queue, simulation."""
