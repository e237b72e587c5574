"""Summaries, tables and plots made from run directories."""
