"""Harness of the end-to-end suite: starts real `alcove serve` processes."""
