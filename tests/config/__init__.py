"""Tests of the site configuration parts that are not one package's section (secrets)."""
