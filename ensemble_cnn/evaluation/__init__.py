"""Scoring a run: members' test predictions, votes, statistics, the report, pictures, comparisons."""
