"""Reproduction and comparison of recorded runs, and the DVC remote they restore data from."""
