"""Operators that move finished backups between storage systems."""
