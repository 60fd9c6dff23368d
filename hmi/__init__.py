"""Bokeh documents: mimic diagrams, alarm list, trends, command panels."""

__all__: list[str] = []
