"""Tests of scada.scaleout (Redis streams between collectors and the central)."""
